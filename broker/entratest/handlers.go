package entratest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// routes maps Entra ID's URL layout. {tenant} is a tenant ID or domain in any case.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{tenant}/v2.0/.well-known/openid-configuration", s.handleDiscovery(v2))
	mux.HandleFunc("GET /{tenant}/.well-known/openid-configuration", s.handleDiscovery(v1))
	mux.HandleFunc("GET /{tenant}/discovery/v2.0/keys", s.handleKeys)
	mux.HandleFunc("GET /{tenant}/discovery/keys", s.handleKeys)
	// No method in these patterns: a GET is counted and answered the way Entra answers it.
	mux.HandleFunc("/{tenant}/oauth2/v2.0/token", s.handleToken(v2))
	mux.HandleFunc("/{tenant}/oauth2/token", s.handleToken(v1))
	return mux
}

// endpointVersion says which generation of Entra endpoint a request reached.
type endpointVersion int

const (
	v1 endpointVersion = iota + 1 // /oauth2/token with resource=
	v2                            // /oauth2/v2.0/token with scope=
)

// handleDiscovery serves a tenant's OpenID Connect discovery document. MSAL requires
// authorization_endpoint, token_endpoint and issuer, and the issuer's host must equal the
// authority's. Like Entra, the endpoints name the tenant by ID even when asked by domain.
func (s *Server) handleDiscovery(v endpointVersion) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("tenant")
		s.mu.Lock()
		s.discoveryReqs[s.keyLocked(name)]++
		t := s.tenants[strings.ToLower(name)]
		s.mu.Unlock()
		if t == nil {
			writeError(w, r, unknownTenant("invalid_tenant", name))
			return
		}

		base := "https://" + r.Host + "/" + t.id
		doc := discoveryDoc{
			ResponseTypesSupported:           []string{"code", "id_token", "code id_token", "token id_token", "token"},
			SubjectTypesSupported:            []string{"pairwise"},
			IDTokenSigningAlgValuesSupported: []string{"RS256"},
			TokenEndpointAuthMethods:         []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
			TenantRegionScope:                "NA",
			CloudInstanceName:                "microsoftonline.com",
		}
		if v == v2 {
			doc.Issuer = base + "/v2.0"
			doc.AuthorizationEndpoint = base + "/oauth2/v2.0/authorize"
			doc.TokenEndpoint = base + "/oauth2/v2.0/token"
			doc.JWKSURI = base + "/discovery/v2.0/keys"
		} else {
			doc.Issuer = tokenIssuer(t.id)
			doc.AuthorizationEndpoint = base + "/oauth2/authorize"
			doc.TokenEndpoint = base + "/oauth2/token"
			doc.JWKSURI = base + "/discovery/keys"
		}
		writeJSON(w, http.StatusOK, doc)
	}
}

// discoveryDoc is the subset of Entra's OpenID configuration this server can stand behind
// (the authorization endpoint is advertised, because MSAL requires it, but not served).
type discoveryDoc struct {
	TokenEndpoint                    string   `json:"token_endpoint"`
	TokenEndpointAuthMethods         []string `json:"token_endpoint_auth_methods_supported"`
	JWKSURI                          string   `json:"jwks_uri"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	Issuer                           string   `json:"issuer"`
	AuthorizationEndpoint            string   `json:"authorization_endpoint"`
	TenantRegionScope                string   `json:"tenant_region_scope"`
	CloudInstanceName                string   `json:"cloud_instance_name"`
}

// handleKeys serves the signing key as a JSON Web Key Set.
func (s *Server) handleKeys(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("tenant")
	s.mu.Lock()
	known := s.tenants[strings.ToLower(name)] != nil
	s.mu.Unlock()
	if !known {
		writeError(w, r, unknownTenant("invalid_tenant", name))
		return
	}
	type jwk struct {
		Kty string `json:"kty"`
		Use string `json:"use"`
		Kid string `json:"kid"`
		Alg string `json:"alg"`
		N   string `json:"n"`
		E   string `json:"e"`
	}
	pub := s.key.PublicKey
	writeJSON(w, http.StatusOK, map[string][]jwk{"keys": {{
		Kty: "RSA",
		Use: "sig",
		Kid: s.kid,
		Alg: "RS256",
		N:   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E:   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// handleToken serves the client-credentials grant: count, apply any fault, validate, issue.
func (s *Server) handleToken(v endpointVersion) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("tenant")
		s.mu.Lock()
		key := s.keyLocked(name)
		s.tokenReqs[key]++
		s.totalTokenReqs++
		f := s.takeFaultLocked(key)
		s.inFlight++
		s.maxInFlight = max(s.maxInFlight, s.inFlight)
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inFlight--
			s.mu.Unlock()
		}()

		if f != nil {
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			if f.Delay > 0 {
				s.wait(r, f.Delay)
			}
			if f.Status != 0 {
				writeFault(w, r, f)
				return
			}
		}

		g, e := s.validate(w, r, v, name)
		if e != nil {
			writeError(w, r, e)
			return
		}
		s.mu.Lock()
		s.clientAuths[key] = append(s.clientAuths[key], g.auth)
		s.mu.Unlock()
		s.issue(w, v, g, f)
	}
}

// wait sleeps for d, or aborts the request (no answer) if the client goes away or the server closes.
func (s *Server) wait(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		panic(http.ErrAbortHandler)
	case <-s.closed:
		panic(http.ErrAbortHandler)
	}
}

// grant is what a validated token request is entitled to.
type grant struct {
	tenantID  string
	appID     string
	resource  string // the token audience
	roles     []string
	lifetime  int // seconds
	refreshIn int // seconds; 0 = absent
	auth      ClientAuth
}

// validate checks a token request the way Entra does and returns what to issue, or the error to
// answer with. It never puts the submitted client_secret in an error.
func (s *Server) validate(w http.ResponseWriter, r *http.Request, v endpointVersion, name string) (grant, *entraError) {
	if r.Method != http.MethodPost {
		return grant{}, &entraError{http.StatusMethodNotAllowed, "invalid_request", 900561,
			"The endpoint only accepts POST requests. Received a " + r.Method + " request."}
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		return grant{}, &entraError{http.StatusBadRequest, "invalid_request", 90013, "Invalid input received from the user."}
	}
	form := r.PostForm
	clientID := form.Get("client_id")

	switch gt := form.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		return grant{}, missingParameter("grant_type")
	default:
		return grant{}, &entraError{http.StatusBadRequest, "unsupported_grant_type", 70003,
			fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt)}
	}

	s.mu.Lock()
	t := s.tenants[strings.ToLower(name)]
	a, registered := s.apps[strings.ToLower(clientID)]
	g := grant{lifetime: s.lifetime, refreshIn: s.refreshIn}
	consented := false
	if t != nil {
		g.tenantID = t.id
		g.roles = t.roles // never modified after AddTenant
		consented = t.consented[strings.ToLower(clientID)]
	}
	s.mu.Unlock()

	switch {
	case t == nil:
		return grant{}, unknownTenant("invalid_request", name)
	case clientID == "":
		return grant{}, missingParameter("client_id")
	case !registered || !consented: // Entra has no service principal for the app in the tenant
		return grant{}, &entraError{http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
			"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application "+
				"has not been installed by the administrator of the tenant or consented to by any user in the tenant. "+
				"You may have sent your authentication request to the wrong tenant.", clientID, name)}
	}
	auth, e := s.authenticateClient(r, form, a, g.tenantID)
	if e != nil {
		return grant{}, e
	}
	g.auth = auth
	g.appID = a.id

	if v == v1 {
		g.resource = form.Get("resource")
		if g.resource == "" {
			return grant{}, missingParameter("resource")
		}
		return g, nil
	}
	scope := form.Get("scope")
	if scope == "" {
		return grant{}, missingParameter("scope")
	}
	resource, ok := defaultScopeResource(scope)
	if !ok {
		return grant{}, &entraError{http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf(
			"The provided value for scope %s is not valid. Client credential flows must have a scope value with "+
				"/.default suffixed to the resource identifier (application ID URI).", scope)}
	}
	g.resource = resource
	return g, nil
}

// authenticateClient checks the client credential of a token request for app a in a tenant:
// a client_secret or a client_assertion, never both. It never puts either in an error.
func (s *Server) authenticateClient(r *http.Request, form url.Values, a app, tenantID string) (ClientAuth, *entraError) {
	secret := form.Get("client_secret")
	assertion, assertionType := form.Get("client_assertion"), form.Get("client_assertion_type")
	if assertion != "" {
		s.mu.Lock()
		s.assertions = append(s.assertions, assertion)
		s.mu.Unlock()
	}
	switch {
	case secret != "" && (assertion != "" || assertionType != ""):
		return ClientAuth{}, &entraError{http.StatusBadRequest, "invalid_request", 9002313, "Invalid request. Request is " +
			"malformed or invalid. [Reason - Both 'client_secret' and 'client_assertion' were presented; send one.]"}
	case assertionType != "" && assertionType != jwtBearer:
		return ClientAuth{}, &entraError{http.StatusBadRequest, "invalid_request", 9002313, "Invalid request. Request is " +
			"malformed or invalid. [Reason - The 'client_assertion_type' must be '" + jwtBearer + "'.]"}
	case assertionType != "" && assertion == "":
		return ClientAuth{}, missingParameter("client_assertion")
	case assertion != "" && assertionType == "":
		return ClientAuth{}, missingParameter("client_assertion_type")
	case assertion != "":
		return s.verifyAssertion(r, a, tenantID, assertion)
	case secret == "":
		return ClientAuth{}, &entraError{http.StatusBadRequest, "invalid_client", 7000218,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'."}
	case a.secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(a.secret)) != 1:
		return ClientAuth{}, &entraError{http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf(
			"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, "+
				"not the client secret ID, for a secret added to app '%s'.", a.id)}
	}
	return ClientAuth{ClientID: a.id, Method: "secret"}, nil
}

// appidacr is the access token's appidacr claim: how the client authenticated.
func (g grant) appidacr() string {
	if g.auth.Method == "secret" {
		return "1"
	}
	return "2" // a certificate or a client assertion
}

// defaultScopeResource returns the resource of a client-credentials scope: exactly one
// "<resource>/.default", besides the OpenID scopes that MSAL always appends
// ("openid offline_access profile") and that Entra ignores for this grant.
func defaultScopeResource(scope string) (string, bool) {
	var resource string
	n := 0
	for _, sc := range strings.Fields(scope) {
		switch sc {
		case "openid", "offline_access", "profile":
			continue
		}
		n++
		resource, _ = strings.CutSuffix(sc, "/.default")
		if resource == sc || resource == "" {
			return "", false
		}
	}
	return resource, n == 1
}

// issue answers a validated request with a new access token, corrupted as f says.
func (s *Server) issue(w http.ResponseWriter, v endpointVersion, g grant, f *Fault) {
	if f == nil {
		f = &Fault{}
	}
	now := time.Now()
	tid := g.tenantID
	if f.WrongTenantID != "" {
		tid = f.WrongTenantID
	}
	expiresIn := g.lifetime
	if f.ExpiresIn != nil && f.ExpiresInRaw == "" {
		expiresIn = *f.ExpiresIn
	}
	// exp follows expires_in, as at Entra ID, unless the fault moves it.
	exp := now.Unix() + int64(g.lifetime)
	if expiresIn >= 0 {
		exp = now.Unix() + int64(expiresIn)
	}
	exp += int64(f.ExpOffset / time.Second)
	var token string
	if f.NotJWT {
		token = rand.Text() + rand.Text()
	} else {
		c := accessClaims{
			Aud:      g.resource,
			Iss:      tokenIssuer(tid),
			Iat:      now.Unix(),
			Nbf:      now.Unix(),
			Exp:      exp,
			Appid:    g.appID,
			Appidacr: g.appidacr(),
			Idp:      tokenIssuer(tid),
			Idtyp:    "app",
			Oid:      servicePrincipalID(g.tenantID, g.appID),
			Roles:    g.roles,
			Sub:      servicePrincipalID(g.tenantID, g.appID),
			Tid:      tid,
			Jti:      rand.Text(),
			Ver:      "1.0",
		}
		token = s.sign(c)
		if short := f.TokenSize - len(token); short > 0 {
			// base64url makes 4 characters of every 3 bytes of claims.
			c.Pad = strings.Repeat("x", short*3/4+1)
			token = s.sign(c)
		}
	}
	s.mu.Lock()
	s.issued = append(s.issued, token)
	s.mu.Unlock()

	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("Pragma", "no-cache")

	if v == v2 {
		resp := tokenResponseV2{
			TokenType:    "Bearer",
			ExtExpiresIn: g.lifetime,
			RefreshIn:    g.refreshIn,
			AccessToken:  token,
		}
		switch {
		case f.ExpiresInRaw != "":
			resp.ExpiresIn = f.ExpiresInRaw
		case expiresIn >= 0:
			resp.ExpiresIn = expiresIn
		}
		writeSuccess(w, resp, f.PadBody)
		return
	}
	// v1 answers with numbers as strings, and with expires_on (which MSAL prefers to expires_in).
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	resp := tokenResponseV1{
		TokenType:    "Bearer",
		ExtExpiresIn: itoa(int64(g.lifetime)),
		NotBefore:    itoa(now.Unix()),
		Resource:     g.resource,
		AccessToken:  token,
	}
	switch {
	case f.ExpiresInRaw != "":
		resp.ExpiresIn, resp.ExpiresOn = f.ExpiresInRaw, f.ExpiresInRaw
	case expiresIn >= 0:
		resp.ExpiresIn = itoa(int64(expiresIn))
		resp.ExpiresOn = itoa(now.Unix() + int64(expiresIn))
	}
	if g.refreshIn > 0 {
		resp.RefreshIn = itoa(int64(g.refreshIn))
	}
	writeSuccess(w, resp, f.PadBody)
}

// writeSuccess answers 200 with v as JSON, with a "padding" member of pad bytes first when pad
// is positive. The padding is written in chunks as it is made, so the body is sent chunked.
func writeSuccess(w http.ResponseWriter, v any, pad int) {
	if pad <= 0 {
		writeJSON(w, http.StatusOK, v)
		return
	}
	body, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("entratest: encoding %T: %v", v, err)) // only our own plain structs get here
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if _, err := io.WriteString(w, `{"padding":"`); err != nil {
		return
	}
	chunk := strings.Repeat("x", 64<<10)
	for pad > 0 {
		n := min(pad, len(chunk))
		if _, err := io.WriteString(w, chunk[:n]); err != nil {
			return // the client stopped reading
		}
		pad -= n
	}
	_, _ = io.WriteString(w, `",`)
	_, _ = w.Write(body[1:])
}

// tokenResponseV2 is the /oauth2/v2.0/token success body.
type tokenResponseV2 struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    any    `json:"expires_in,omitempty"` // a number, or a string when a fault says so
	ExtExpiresIn int    `json:"ext_expires_in"`
	RefreshIn    int    `json:"refresh_in,omitempty"`
	AccessToken  string `json:"access_token"`
}

// tokenResponseV1 is the /oauth2/token success body.
type tokenResponseV1 struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    string `json:"expires_in,omitempty"`
	ExtExpiresIn string `json:"ext_expires_in"`
	ExpiresOn    string `json:"expires_on,omitempty"`
	NotBefore    string `json:"not_before"`
	RefreshIn    string `json:"refresh_in,omitempty"`
	Resource     string `json:"resource"`
	AccessToken  string `json:"access_token"`
}

// tokenIssuer is the iss claim of a v1.0 access token.
func tokenIssuer(tenantID string) string { return "https://sts.windows.net/" + tenantID + "/" }

// entraError is an Entra ID error answer.
type entraError struct {
	status int
	err    string // OAuth error code, e.g. "invalid_client"
	code   int    // AADSTS number
	msg    string // error_description after "AADSTSnnn: ", before the trace trailer
}

// unknownTenant is Entra's answer for a tenant it does not know; errCode differs by endpoint.
func unknownTenant(errCode, name string) *entraError {
	return &entraError{http.StatusBadRequest, errCode, 90002, fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the "+
		"correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this "+
		"may happen if there are no active subscriptions for the tenant.", name)}
}

// missingParameter is Entra's answer for a request without a required form parameter.
func missingParameter(param string) *entraError {
	return &entraError{http.StatusBadRequest, "invalid_request", 900144,
		fmt.Sprintf("The request body must contain the following parameter: '%s'.", param)}
}

// writeFault answers with a Fault's status and body.
func writeFault(w http.ResponseWriter, r *http.Request, f *Fault) {
	if f.Body == "" {
		writeError(w, r, faultError(f.Status))
		return
	}
	ct := "text/plain; charset=utf-8"
	if json.Valid([]byte(f.Body)) {
		ct = "application/json; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(f.Status)
	_, _ = w.Write([]byte(f.Body))
}

// faultError is the default Entra-shaped body for a Fault's status.
func faultError(status int) *entraError {
	switch {
	case status == http.StatusTooManyRequests:
		return &entraError{status, "temporarily_unavailable", 50196,
			"The server terminated an operation because it encountered a client request loop. Please contact your app vendor."}
	case status == http.StatusServiceUnavailable:
		return &entraError{status, "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."}
	case status >= 500:
		return &entraError{status, "server_error", 50000,
			"There was an error issuing a token or an issue with our sign-in service."}
	default:
		return &entraError{status, "invalid_request", 50000,
			"There was an error issuing a token or an issue with our sign-in service."}
	}
}

// errorBody is Entra's JSON error shape.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	ErrorCodes       []int  `json:"error_codes"`
	Timestamp        string `json:"timestamp"`
	TraceID          string `json:"trace_id"`
	CorrelationID    string `json:"correlation_id"`
	ErrorURI         string `json:"error_uri"`
}

// writeError answers with e in Entra's shape. As Entra does, the correlation ID is the client's
// client-request-id header when that is a UUID, and the description ends with a CRLF-separated
// trace trailer.
func writeError(w http.ResponseWriter, r *http.Request, e *entraError) {
	traceID := newUUID()
	correlationID := r.Header.Get("client-request-id")
	if !isUUID(correlationID) {
		correlationID = newUUID()
	}
	ts := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	w.Header().Set("x-ms-request-id", traceID)
	w.Header().Set("Cache-Control", "no-store, no-cache")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, e.status, errorBody{
		Error: e.err,
		ErrorDescription: fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
			e.code, e.msg, traceID, correlationID, ts),
		ErrorCodes:    []int{e.code},
		Timestamp:     ts,
		TraceID:       traceID,
		CorrelationID: correlationID,
		ErrorURI:      fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", e.code),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("entratest: encoding %T: %v", v, err)) // only our own plain structs get here
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
