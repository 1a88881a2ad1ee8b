package broker

import "time"

// document is the TOML shape of brokerd's configuration file, as go-toml
// decodes it. The scalars of the top level are pointers, so that a key set
// to zero is told apart from a key left out (which gets the default).
type document struct {
	// AuthorityHost, when set, is the Entra ID login host of every app
	// that sets none of its own, whatever its cloud, e.g. a proxy or
	// https://login.microsoftonline.us.
	AuthorityHost *string `toml:"authority_host"`
	// Keystore names the credential backend: keyring, systemd, directory
	// or memory.
	Keystore *string `toml:"keystore"`
	// CredentialsDir is the directory keystore's directory: one file per
	// app, named by its client id.
	CredentialsDir *string `toml:"credentials_dir"`
	// RefreshBefore is how long before expiry a token is refreshed (capped
	// at half the token's lifetime).
	RefreshBefore *duration `toml:"refresh_before"`
	// MinValid is the default least lifetime a token handed out has left.
	MinValid *duration `toml:"min_valid"`
	// IdPTimeout bounds one token request to Entra ID.
	IdPTimeout *duration `toml:"idp_timeout"`
	// KeystoreTimeout bounds one keystore call: a locked keyring may wait
	// on an unlock prompt for ever.
	KeystoreTimeout *duration `toml:"keystore_timeout"`
	// PrefetchConcurrency bounds the scheduled token requests (first
	// fetch, refresh, retry) in flight at once.
	PrefetchConcurrency *int `toml:"prefetch_concurrency"`
	// PrefetchRate bounds the scheduled token requests started per
	// second, so that thousands of tenants reach Entra ID spread out, at
	// start-up, when a credential changes, and when refreshes fall due
	// together (after a suspend, say).
	PrefetchRate *int `toml:"prefetch_rate"`
	// MaxIdPRequests bounds the token requests in flight to Entra ID at
	// once, over all tenants, callers' included.
	MaxIdPRequests *int `toml:"max_idp_requests"`
	// AccessLists at the top level are the default for tenants that set
	// none. With none anywhere, only the daemon's uid and root get tokens.
	AccessLists
	// Limits bound what local callers can make the daemon do.
	Limits limitsTable `toml:"limits"`
	// Apps are the Entra ID app registrations, by name.
	Apps map[string]*appTable `toml:"apps"`
	// Tenants are the customer tenants, by name.
	Tenants map[string]*tenantTable `toml:"tenants"`
}

// appTable is one (multi-tenant) Entra ID app registration, [apps.NAME].
type appTable struct {
	// ClientID is the app's application (client) id, a GUID.
	ClientID string `toml:"client_id"`
	// Cloud is the national cloud of the app's tenants: public, usgov
	// (GCC), usgovhigh or dod. It chooses the login host and the default
	// scope. Pointers tell a key left out from one set to "".
	Cloud *string `toml:"cloud"`
	// AuthorityHost, when set, is the app's Entra ID login host, over
	// the top-level one and the cloud's.
	AuthorityHost *string `toml:"authority_host"`
	// Scopes are requested when a caller names none.
	Scopes []string `toml:"scopes"`
	// AllowedScopes are the scopes (or resources, meaning their
	// /.default scope) callers may ask for; the default is Scopes, which
	// are always allowed.
	AllowedScopes []string `toml:"allowed_scopes"`
	// RequiredRoles are the application roles every token of the app's
	// scopes should carry; the broker warns when one lacks any.
	RequiredRoles []string `toml:"required_roles"`
	// AssertionFile, when set, is a file holding a federated assertion
	// (a JWT another issuer signed: a Kubernetes service account token, a
	// GitHub Actions OIDC token, a SPIFFE JWT-SVID) that the app
	// authenticates with instead of a stored credential; it is read again
	// for every token request.
	AssertionFile *string `toml:"assertion_file"`
	// SendX5C sends the certificate chain (the x5c header) with each
	// client assertion, for subject name and issuer authentication.
	SendX5C *bool `toml:"send_x5c"`
}

// limitsTable is [limits]: the bounds on what one local caller can make
// the daemon do. Pointers tell a key left out (the default) from a zero.
type limitsTable struct {
	// MaxRequestBytes bounds one gRPC message a caller sends.
	MaxRequestBytes *int `toml:"max_request_bytes"`
	// MaxTenantBytes bounds the tenant a GetToken names.
	MaxTenantBytes *int `toml:"max_tenant_bytes"`
	// MaxScopes bounds the scopes one GetToken names.
	MaxScopes *int `toml:"max_scopes"`
	// MaxScopeBytes bounds each scope a GetToken names.
	MaxScopeBytes *int `toml:"max_scope_bytes"`
	// MaxScopeSets bounds the scope sets, beyond its app's scopes, that
	// one tenant keeps fresh.
	MaxScopeSets *int `toml:"max_scope_sets"`
	// MaxConnections bounds the open connections over all callers.
	MaxConnections *int `toml:"max_connections"`
	// MaxConnectionsPerUID bounds the open connections of one uid.
	MaxConnectionsPerUID *int `toml:"max_connections_per_uid"`
	// IdleTimeout closes a connection with no call in progress for this
	// long.
	IdleTimeout *duration `toml:"idle_timeout"`
	// ReacquireInterval is the least time between two acquisitions of a
	// tenant's token that a caller's min_valid forces while the current
	// token is younger than it.
	ReacquireInterval *duration `toml:"reacquire_interval"`
	// AuditDenialsPerMinute bounds the denial lines audited per uid and
	// minute; the rest are summed up in one line.
	AuditDenialsPerMinute *int `toml:"audit_denials_per_minute"`
}

// tenantTable is one customer tenant that has consented to an app,
// [tenants.NAME].
type tenantTable struct {
	// ID is the tenant id, a GUID.
	ID string `toml:"id"`
	// App names the entry of apps tokens are acquired with.
	App string `toml:"app"`
	// Domains are the tenant's verified domains (e.g.
	// contoso.onmicrosoft.com), accepted by GetToken in place of the name.
	Domains []string `toml:"domains"`
	// AccessLists say who may get this tenant's tokens; when empty, the
	// top-level lists apply.
	AccessLists
}

// duration is a time.Duration written in TOML as a string such as "15m";
// the decoder refuses anything else, a bare number included.
type duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// parseDocument decodes data strictly: unknown keys, values of the wrong
// kind and keys TOML does not allow are errors naming the file, the line
// and the key.
func parseDocument(name string, data []byte) (*document, error) {
	var doc document
	d := decoder{name: name}
	if err := d.decode(data, &doc); err != nil {
		return nil, err
	}
	return &doc, nil
}
