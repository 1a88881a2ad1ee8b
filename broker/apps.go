package broker

import (
	"slices"
	"strings"
)

// AppStatus describes one configured app registration, without its
// credential.
type AppStatus struct {
	Name, ClientID string
	// AuthorityHost is the Entra ID login host its tokens come from.
	AuthorityHost string
	// RequiredRoles are the roles every token of its scopes should carry
	// (required_roles), sorted.
	RequiredRoles []string
	// Credential describes the credential the broker holds; nil when it
	// holds none (not read yet, or the keystore has none).
	Credential *CredentialInfo
	// CredentialError is why the last keystore call for the credential
	// (read, write, delete) failed; "" once one succeeds.
	CredentialError string
}

// Apps reports every configured app, sorted by name.
func (b *Broker) Apps() []AppStatus {
	w := b.world()
	out := make([]AppStatus, 0, len(w.cfg.apps))
	for _, ac := range w.cfg.apps {
		s := AppStatus{Name: ac.Name, ClientID: ac.ClientID, AuthorityHost: ac.AuthorityHost,
			RequiredRoles: slices.Clone(ac.RequiredRoles)}
		b.mu.Lock()
		a := w.apps[ac.Name]
		if h := a.cred; h != nil {
			info := h.info
			s.Credential = &info
		}
		s.CredentialError = a.storeErr
		b.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// MissingRoles returns the roles of required that have is without, in
// the order of required.
func MissingRoles(required, have []string) []string {
	var missing []string
	for _, r := range required {
		if !slices.Contains(have, r) {
			missing = append(missing, r)
		}
	}
	return missing
}

// warnMissingRoles logs, once for each token of the app's scopes as it
// lands, the required_roles of the tenant's app that the token lacks. It
// names the roles, never the token.
func (b *Broker) warnMissingRoles(t *tenant, tok *Token) {
	missing := MissingRoles(t.app.required, tok.Roles)
	if len(missing) == 0 {
		return
	}
	b.log.Warn("token lacks required roles", "tenant", t.name, "app", t.app.name, "missing_roles", missing,
		"remedy", "add the application permissions "+strings.Join(missing, ", ")+" to app "+t.app.name+
			" and have the tenant's administrator grant admin consent again: "+b.idpContext(t).consentURL)
}
