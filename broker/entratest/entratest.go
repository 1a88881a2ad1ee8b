// Package entratest is a fake Microsoft Entra ID (Azure AD) token service over TLS on loopback.
//
// It serves just enough of Entra ID for the client-credentials grant that the real MSAL Go
// confidential client (configured with authority "<URL>/<tenant>", WithInstanceDiscovery(false)
// and WithHTTPClient(srv.Client())) talks to it exactly as it talks to login.microsoftonline.com:
// per-tenant OpenID discovery documents, v2 and v1 token endpoints, signing keys, Entra-shaped
// errors (AADSTS codes), RS256-signed v1.0 access tokens with tid/aud/roles/appid claims, and
// injectable faults (error statuses, Retry-After, delays, corrupted and oversized answers).
//
// Clients authenticate with a client secret (AddApp), a client assertion signed with a
// registered certificate (AddCertificate; MSAL's confidential.NewCredFromCert), or an assertion
// from an external issuer that a federated identity credential trusts (AddFederatedCredential;
// confidential.NewCredFromAssertionCallback). NewCertificate and NewIssuer make such credentials
// for tests, and ClientAuths tells how each request authenticated.
//
// It is used by tests, benchmarks and `brokerd --dev`, so it does not import package testing.
// It never talks to Microsoft and its tokens are worthless outside of it.
package entratest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultRoles are the application permissions a tenant grants when Tenant.Roles is nil.
var DefaultRoles = []string{"Alert.Read.All", "Machine.Read.All"}

// defaultLifetime is the token lifetime until SetLifetime is called.
const defaultLifetime = 3600 * time.Second

// Server is a fake Entra ID. It is safe for concurrent use.
type Server struct {
	ts     *httptest.Server
	key    *rsa.PrivateKey // signs every JWT access token
	kid    string          // key ID of key, in JWT headers and the JWKS
	closed chan struct{}   // closed by Close, so delayed requests stop waiting
	once   sync.Once

	mu             sync.Mutex
	apps           map[string]app     // by lower-case client ID
	tenants        map[string]*tenant // by lower-case tenant ID and by each lower-case domain
	lifetime       int                // token lifetime in seconds
	refreshIn      int                // refresh_in in seconds; 0 = absent
	faults         map[string]*Fault  // by tenant key (see keyLocked); "" = every tenant
	tokenReqs      map[string]int     // by tenant key
	discoveryReqs  map[string]int     // by tenant key
	totalTokenReqs int
	inFlight       int // token requests being handled now
	maxInFlight    int // the most ever handled at once
	issued         []string
	clientAuths    map[string][]ClientAuth // by tenant key
	assertions     []string                // every client_assertion received
}

// app is a registered application (client).
type app struct {
	id        string // as registered; becomes the appid claim
	secret    string // "" = none
	certs     []*x509.Certificate
	federated []FederatedCredential
}

// tenant is a registered tenant.
type tenant struct {
	id        string
	domains   []string        // lower-case
	consented map[string]bool // lower-case client IDs
	roles     []string
}

// Tenant describes a customer tenant.
type Tenant struct {
	ID            string   // tenant ID (normally a GUID); becomes the tid claim
	Domains       []string // verified domains, e.g. "contoso.onmicrosoft.com"; usable instead of ID in URLs
	ConsentedApps []string // client IDs an administrator has consented to
	Roles         []string // application permissions in issued tokens; nil = DefaultRoles, empty = none
}

// Fault changes how the server answers token requests. See SetFault.
type Fault struct {
	// Status, if non-zero, answers the token request with this HTTP status instead of processing it...
	Status int
	// ...and this raw body. Empty means an Entra-shaped JSON error suited to Status: 429 with
	// AADSTS50196, 503 temporarily_unavailable AADSTS90033, other 5xx server_error AADSTS50000.
	// Status 200 with a Body sends a malformed "success".
	Body string
	// RetryAfter is sent as the Retry-After header (seconds or an HTTP date) if non-empty.
	RetryAfter string
	// Delay is waited before answering. The wait ends early, without an answer, if the client
	// gives up or the server is closed.
	Delay time.Duration
	// Times limits the fault to this many token requests, after which it clears itself.
	// 0 means until SetFault replaces or clears it.
	Times int

	// Corruptions of an otherwise successful answer (requests that fail validation are unaffected).

	// WrongTenantID, if non-empty, is put in the token's tid (and iss) claims instead of the real tenant ID.
	WrongTenantID string
	// NotJWT makes access_token an opaque string instead of a JWT.
	NotJWT bool
	// ExpiresIn, if non-nil, replaces the expires_in value, and the JWT's exp follows it (exp is
	// issue time + ExpiresIn) so that the two agree as they do at Entra ID; a negative value omits
	// expires_in (and the v1 expires_on) entirely, leaving exp at the configured lifetime.
	ExpiresIn *int
	// ExpiresInRaw, if non-empty, is sent verbatim as the JSON string value of expires_in (and of
	// the v1 expires_on), e.g. "soon", instead of the number. It takes precedence over ExpiresIn.
	ExpiresInRaw string
	// ExpOffset moves the JWT's exp claim by this much from where it would be (issue time plus
	// the lifetime, or ExpiresIn): -24h makes a token whose exp is a day in the past, while
	// expires_in still says it is fresh.
	ExpOffset time.Duration
	// PadBody, if positive, adds a "padding" member of this many bytes to the JSON success body,
	// which stays valid JSON. The padding is streamed in chunks without a Content-Length, so a
	// multi-megabyte body costs the server little memory.
	PadBody int
	// TokenSize, if larger than an ordinary token, pads the JWT's payload with a "pad" claim so
	// that the access token is at least this many bytes; it stays a validly signed JWT.
	TokenSize int
}

// signingKey is the RSA key every Server of the process signs access tokens with, made once:
// RSA key generation is slow under the race detector, and test suites start hundreds of Servers.
var signingKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

// NewServer starts a fake Entra ID on https://127.0.0.1:<random port> with a fresh self-signed
// certificate (valid for 127.0.0.1, ::1 and localhost). It signs tokens with an RSA key shared by
// every Server of the process (so one Server's tokens verify with another's key). It has no apps
// and no tenants; add them with AddApp and AddTenant. Call Close when done.
func NewServer() (*Server, error) {
	key, err := signingKey()
	if err != nil {
		return nil, fmt.Errorf("entratest: generating signing key: %w", err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("entratest: encoding signing key: %w", err)
	}
	sum := sha256.Sum256(pub)
	cert, err := selfSignedCert()
	if err != nil {
		return nil, err
	}

	s := &Server{
		key:           key,
		kid:           base64.RawURLEncoding.EncodeToString(sum[:20]),
		closed:        make(chan struct{}),
		apps:          map[string]app{},
		tenants:       map[string]*tenant{},
		lifetime:      int(defaultLifetime / time.Second),
		faults:        map[string]*Fault{},
		tokenReqs:     map[string]int{},
		discoveryReqs: map[string]int{},
		clientAuths:   map[string][]ClientAuth{},
	}
	// NewUnstartedServer listens on 127.0.0.1:0. Our own certificate replaces httptest's built-in
	// one, whose private key is public: a separate process told to trust CertPEM (SSL_CERT_FILE)
	// then trusts this server only.
	s.ts = httptest.NewUnstartedServer(s.routes())
	s.ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.ts.StartTLS()
	return s, nil
}

// selfSignedCert makes a short-lived self-signed CA certificate for the loopback addresses.
func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("entratest: generating TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("entratest: generating TLS serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"entratest fake Entra ID"}, CommonName: "localhost"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(90 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // so tools that want a CA in SSL_CERT_FILE accept it as a root
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("entratest: creating TLS certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// URL returns the authority host, "https://127.0.0.1:PORT". MSAL's authority is URL()+"/"+tenant.
func (s *Server) URL() string { return s.ts.URL }

// Client returns an HTTP client that trusts the server's certificate. The same client is
// returned every time; Close closes its idle connections.
func (s *Server) Client() *http.Client { return s.ts.Client() }

// CertPEM returns the server's certificate in PEM form, for a separate process to trust
// (for example through SSL_CERT_FILE).
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.ts.Certificate().Raw})
}

// PublicKey returns the key that verifies the signatures of issued JWTs (also served as a JWKS).
func (s *Server) PublicKey() *rsa.PublicKey { return &s.key.PublicKey }

// Close aborts requests still waiting out a Fault.Delay and shuts the server down.
func (s *Server) Close() {
	s.once.Do(func() { close(s.closed) })
	s.ts.Close()
}

// AddApp registers an application with a client secret, or replaces the secret of a registered
// one (its certificates and federated credentials stay). Client IDs compare case-insensitively.
func (s *Server) AddApp(clientID, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(clientID)
	a.secret = secret
	s.apps[strings.ToLower(clientID)] = a
}

// AddTenant registers a tenant, replacing any tenant with the same ID. The ID and domains
// compare case-insensitively in URLs. It panics if t.ID is empty.
func (s *Server) AddTenant(t Tenant) {
	if t.ID == "" {
		panic("entratest: AddTenant: empty tenant ID")
	}
	nt := &tenant{id: t.ID, consented: map[string]bool{}, roles: slices.Clone(t.Roles)}
	if t.Roles == nil {
		nt.roles = slices.Clone(DefaultRoles)
	}
	for _, d := range t.Domains {
		nt.domains = append(nt.domains, strings.ToLower(d))
	}
	for _, a := range t.ConsentedApps {
		nt.consented[strings.ToLower(a)] = true
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for name, old := range s.tenants {
		if strings.EqualFold(old.id, t.ID) {
			delete(s.tenants, name)
		}
	}
	s.tenants[strings.ToLower(t.ID)] = nt
	for _, d := range nt.domains {
		s.tenants[d] = nt
	}
}

// SetConsent grants or revokes an app's admin consent in a tenant (given by ID or domain).
// It panics if the tenant is not registered.
func (s *Server) SetConsent(tenantID, clientID string, consented bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[strings.ToLower(tenantID)]
	if t == nil {
		panic(fmt.Sprintf("entratest: SetConsent: unknown tenant %q", tenantID))
	}
	if consented {
		t.consented[strings.ToLower(clientID)] = true
	} else {
		delete(t.consented, strings.ToLower(clientID))
	}
}

// SetLifetime sets the lifetime of tokens issued from now on: expires_in, and exp-iat in the
// JWT. It is truncated to whole seconds and panics below one second. The default is 3600s.
func (s *Server) SetLifetime(d time.Duration) {
	if d < time.Second {
		panic(fmt.Sprintf("entratest: SetLifetime(%v): below one second", d))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lifetime = int(d / time.Second)
}

// SetRefreshIn makes token responses carry refresh_in (truncated to whole seconds) when d is
// at least a second; otherwise (the default) refresh_in is absent.
func (s *Server) SetRefreshIn(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refreshIn = max(int(d/time.Second), 0)
}

// SetFault installs f for token requests to a tenant (ID or domain; a tenant that is not
// registered is matched as written, case-insensitively), or to every tenant when tenantID is "".
// A nil f clears it. A tenant's own fault takes precedence over the every-tenant one; one fault at
// most applies to a request. A fault is used up (see Fault.Times) by each token request it is
// applied to, whatever the outcome. The server keeps a copy of f.
func (s *Server) SetFault(tenantID string, f *Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := ""
	if tenantID != "" {
		key = s.keyLocked(tenantID)
	}
	if f == nil {
		delete(s.faults, key)
		return
	}
	c := *f
	if f.ExpiresIn != nil {
		n := *f.ExpiresIn
		c.ExpiresIn = &n
	}
	s.faults[key] = &c
}

// takeFaultLocked returns a copy of the fault that applies to a token request for the tenant key,
// or nil, and uses it up once.
func (s *Server) takeFaultLocked(key string) *Fault {
	for _, k := range []string{key, ""} {
		f := s.faults[k]
		if f == nil {
			continue
		}
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				delete(s.faults, k)
			}
		}
		c := *f
		return &c
	}
	return nil
}

// keyLocked maps a tenant as written in a URL path (ID or domain, any case) to the key of its
// counters and faults: the tenant ID if the tenant is registered, else the lower-cased text.
func (s *Server) keyLocked(name string) string {
	if t := s.tenants[strings.ToLower(name)]; t != nil {
		return t.id
	}
	return strings.ToLower(name)
}

// TokenRequests returns how many requests reached the token endpoints (v2 and v1) of a tenant,
// given by ID or domain, whatever their outcome.
func (s *Server) TokenRequests(tenant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokenReqs[s.keyLocked(tenant)]
}

// DiscoveryRequests returns how many requests reached the OpenID discovery documents (v2 and v1)
// of a tenant, given by ID or domain, whatever their outcome.
func (s *Server) DiscoveryRequests(tenant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.discoveryReqs[s.keyLocked(tenant)]
}

// MaxConcurrentTokenRequests is the most token requests the server has
// been handling at once.
func (s *Server) MaxConcurrentTokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

// TotalTokenRequests returns how many requests reached any token endpoint.
func (s *Server) TotalTokenRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.totalTokenReqs
}

// Issued returns every access token issued so far, oldest first, so that leak tests can search
// logs and output for them.
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.issued)
}
