package entratest_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/cache"
	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

const (
	appID    = "0f3e6f5a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
	secret   = "Qx8~s3cr3t.VALUE_that-must-never-leak"
	tenantA  = "6b1f0c1e-2d3a-4b5c-9d8e-7f6a5b4c3d2e"
	domainA  = "contoso.onmicrosoft.com"
	tenantB  = "a0e1d2c3-b4a5-4968-8776-655443322110"
	tenantC  = "c3c3c3c3-1111-4222-8333-444455556666" // the app is not consented here
	audience = "https://api.securitycenter.microsoft.com"
	scope    = audience + "/.default"
)

var scopes = []string{scope}

// newServer starts a fake Entra ID with one app consented in tenants A (with a domain) and B
// (custom roles), and registered but not consented in tenant C.
func newServer(t *testing.T) *entratest.Server {
	t.Helper()
	srv, err := entratest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	srv.AddApp(appID, secret)
	srv.AddTenant(entratest.Tenant{ID: tenantA, Domains: []string{domainA}, ConsentedApps: []string{appID}})
	srv.AddTenant(entratest.Tenant{ID: tenantB, ConsentedApps: []string{appID}, Roles: []string{"Machine.Isolate"}})
	srv.AddTenant(entratest.Tenant{ID: tenantC})
	return srv
}

// noCache empties MSAL's cache before every use, so every acquisition reaches the token endpoint.
type noCache struct{}

func (noCache) Replace(ctx context.Context, u cache.Unmarshaler, h cache.ReplaceHints) error {
	return u.Unmarshal([]byte("{}"))
}

func (noCache) Export(ctx context.Context, m cache.Marshaler, h cache.ExportHints) error { return nil }

// newClient returns a real MSAL confidential client for the tenant, configured as the broker does.
func newClient(t *testing.T, srv *entratest.Server, tenant, clientSecret string, httpClient *http.Client) confidential.Client {
	t.Helper()
	cred, err := confidential.NewCredFromSecret(clientSecret)
	if err != nil {
		t.Fatal(err)
	}
	if httpClient == nil {
		httpClient = srv.Client()
	}
	c, err := confidential.New(srv.URL()+"/"+tenant, appID, cred,
		confidential.WithInstanceDiscovery(false),
		confidential.WithHTTPClient(httpClient),
		confidential.WithCache(noCache{}))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func acquire(t *testing.T, c confidential.Client) (confidential.AuthResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.AcquireTokenByCredential(ctx, scopes)
}

func mustAcquire(t *testing.T, c confidential.Client) confidential.AuthResult {
	t.Helper()
	ar, err := acquire(t, c)
	if err != nil {
		t.Fatalf("AcquireTokenByCredential: %v", err)
	}
	if ar.Metadata.TokenSource != confidential.TokenSourceIdentityProvider {
		t.Fatalf("TokenSource = %v, want the identity provider", ar.Metadata.TokenSource)
	}
	return ar
}

// wantErrContains acquires a token, expecting an error that mentions every one of subs.
func wantErrContains(t *testing.T, c confidential.Client, subs ...string) error {
	t.Helper()
	_, err := acquire(t, c)
	if err == nil {
		t.Fatalf("AcquireTokenByCredential succeeded, want an error containing %q", subs)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("error %q does not contain %q", err, s)
		}
	}
	return err
}

func mustClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	c, err := entratest.Claims(token)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawToken POSTs form to a token endpoint path (e.g. "/{tenant}/oauth2/v2.0/token") with a
// known client-request-id and returns the response with its body read.
func rawToken(t *testing.T, srv *entratest.Server, path string, form url.Values) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL()+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("client-request-id", correlationID)
	return do(t, srv.Client(), req)
}

const correlationID = "5e0c8a47-93a1-4f0d-b7d2-1c2b3a4d5e6f"

func rawGet(t *testing.T, client *http.Client, u string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, client, req)
}

func do(t *testing.T, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func v2Form(clientSecret, scope string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {clientSecret}, "scope": {scope}}
}

func decode(t *testing.T, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	return m
}

func TestMSALAcquiresSignedTokenWithClaims(t *testing.T) {
	srv := newServer(t)
	srv.SetLifetime(30 * time.Second)
	c := newClient(t, srv, tenantA, secret, nil)

	before := time.Now()
	ar := mustAcquire(t, c)
	after := time.Now()

	claims := mustClaims(t, ar.AccessToken)
	for k, want := range map[string]any{
		"tid": tenantA, "aud": audience, "appid": appID, "iss": "https://sts.windows.net/" + tenantA + "/",
		"idtyp": "app", "ver": "1.0",
	} {
		if claims[k] != want {
			t.Errorf("claim %s = %v, want %v", k, claims[k], want)
		}
	}
	if got, want := claims["roles"], []any{"Alert.Read.All", "Machine.Read.All"}; !slices.Equal(got.([]any), want) {
		t.Errorf("roles = %v, want %v", got, want)
	}
	if claims["oid"] == "" || claims["oid"] != claims["sub"] {
		t.Errorf("oid %v and sub %v should be the same service principal ID", claims["oid"], claims["sub"])
	}
	iat, exp := claims["iat"].(float64), claims["exp"].(float64)
	if exp-iat != 30 || claims["nbf"] != iat {
		t.Errorf("iat %v nbf %v exp %v: want nbf = iat and exp = iat+30", iat, claims["nbf"], exp)
	}
	if iat < float64(before.Unix()) || iat > float64(after.Unix()) {
		t.Errorf("iat %v outside the acquisition [%d, %d]", iat, before.Unix(), after.Unix())
	}
	// MSAL computes ExpiresOn as its parse time + expires_in.
	if ar.ExpiresOn.Before(before.Add(30*time.Second)) || ar.ExpiresOn.After(after.Add(30*time.Second)) {
		t.Errorf("ExpiresOn %v is not 30s after the acquisition [%v, %v]", ar.ExpiresOn, before, after)
	}
	verifyRS256(t, srv, ar.AccessToken)

	// With the cache emptied every time, a second acquisition reaches Entra again, but the
	// discovery document is fetched once per client.
	ar2 := mustAcquire(t, c)
	if ar2.AccessToken == ar.AccessToken {
		t.Error("two acquisitions returned the same token")
	}
	if mustClaims(t, ar2.AccessToken)["jti"] == claims["jti"] {
		t.Error("two tokens share a jti")
	}
	if n := srv.TokenRequests(tenantA); n != 2 {
		t.Errorf("TokenRequests = %d, want 2", n)
	}
	if n := srv.DiscoveryRequests(tenantA); n != 1 {
		t.Errorf("DiscoveryRequests = %d, want 1", n)
	}
	if got := srv.Issued(); !slices.Equal(got, []string{ar.AccessToken, ar2.AccessToken}) {
		t.Errorf("Issued() = %d tokens, want the 2 acquired ones in order", len(got))
	}
}

// verifyRS256 checks a token's signature against PublicKey and against the served JWKS.
func verifyRS256(t *testing.T, srv *entratest.Server, token string) {
	t.Helper()
	parts := strings.Split(token, ".")
	hdrJSON, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct{ Alg, Typ, Kid string }
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
		t.Fatal(err)
	}
	if hdr.Alg != "RS256" || hdr.Typ != "JWT" || hdr.Kid == "" {
		t.Fatalf("JWT header %s: want alg RS256, typ JWT and a kid", hdrJSON)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if err := rsa.VerifyPKCS1v15(srv.PublicKey(), crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("signature does not verify with PublicKey: %v", err)
	}

	resp, body := rawGet(t, srv.Client(), srv.URL()+"/"+tenantA+"/discovery/v2.0/keys")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS: %s %s", resp.Status, body)
	}
	var jwks struct {
		Keys []struct{ Kty, Kid, N, E string }
	}
	if err := json.Unmarshal(body, &jwks); err != nil || len(jwks.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", body, err)
	}
	k := jwks.Keys[0]
	n, errN := base64.RawURLEncoding.DecodeString(k.N)
	e, errE := base64.RawURLEncoding.DecodeString(k.E)
	if k.Kty != "RSA" || k.Kid != hdr.Kid || errN != nil || errE != nil {
		t.Fatalf("JWKS key %+v does not match the JWT header kid %q", k, hdr.Kid)
	}
	pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("signature does not verify with the JWKS key: %v", err)
	}
}

func TestMSALByDomainCountsUnderTenantID(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, "Contoso.OnMicrosoft.com", secret, nil)
	ar := mustAcquire(t, c)
	if tid := mustClaims(t, ar.AccessToken)["tid"]; tid != tenantA {
		t.Errorf("tid = %v, want %s", tid, tenantA)
	}
	for _, name := range []string{tenantA, domainA, strings.ToUpper(domainA)} {
		if n := srv.TokenRequests(name); n != 1 {
			t.Errorf("TokenRequests(%q) = %d, want 1", name, n)
		}
		if n := srv.DiscoveryRequests(name); n != 1 {
			t.Errorf("DiscoveryRequests(%q) = %d, want 1", name, n)
		}
	}
	if n := srv.TotalTokenRequests(); n != 1 {
		t.Errorf("TotalTokenRequests = %d, want 1", n)
	}
}

func TestMSALRoles(t *testing.T) {
	srv := newServer(t)
	srv.AddTenant(entratest.Tenant{ID: "no-roles", ConsentedApps: []string{appID}, Roles: []string{}})

	ar := mustAcquire(t, newClient(t, srv, tenantB, secret, nil))
	if got := mustClaims(t, ar.AccessToken)["roles"]; !slices.Equal(got.([]any), []any{"Machine.Isolate"}) {
		t.Errorf("tenant B roles = %v, want [Machine.Isolate]", got)
	}
	ar = mustAcquire(t, newClient(t, srv, "no-roles", secret, nil))
	if got, ok := mustClaims(t, ar.AccessToken)["roles"]; ok {
		t.Errorf("roles = %v, want no roles claim for an empty Roles", got)
	}
}

func TestMSALWrongSecret(t *testing.T) {
	srv := newServer(t)
	const wrong = "wrong-secret-value-1234"
	err := wantErrContains(t, newClient(t, srv, tenantA, wrong, nil), "AADSTS7000215", "invalid_client", appID)
	var ce msalerrors.CallErr
	if !errors.As(err, &ce) || ce.Resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("want a CallErr with status 401, got %#v", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Error("the error contains the submitted secret")
	}

	// Re-secreting the app: the old secret stops working, the new one works.
	srv.AddApp(appID, "rotated-secret")
	wantErrContains(t, newClient(t, srv, tenantA, secret, nil), "AADSTS7000215")
	mustAcquire(t, newClient(t, srv, tenantA, "rotated-secret", nil))
}

func TestMSALUnknownTenant(t *testing.T) {
	srv := newServer(t)
	const unknown = "ffffffff-0000-4000-8000-00000000dead"
	wantErrContains(t, newClient(t, srv, unknown, secret, nil), "AADSTS90002", "invalid_tenant")
	// MSAL stops at the discovery document; the token endpoint is never reached.
	if n := srv.DiscoveryRequests(unknown); n != 1 {
		t.Errorf("DiscoveryRequests(unknown) = %d, want 1", n)
	}
	if n := srv.TotalTokenRequests(); n != 0 {
		t.Errorf("TotalTokenRequests = %d, want 0", n)
	}
}

func TestMSALNotConsented(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, tenantC, secret, nil)
	wantErrContains(t, c, "AADSTS700016", "unauthorized_client",
		"Application with identifier '"+appID+"' was not found in the directory '"+tenantC+"'")

	srv.SetConsent(tenantC, appID, true)
	mustAcquire(t, c)

	srv.SetConsent(tenantC, strings.ToUpper(appID), false) // client IDs compare case-insensitively
	wantErrContains(t, c, "AADSTS700016")
	// Not being consented is reported before the secret is checked.
	wantErrContains(t, newClient(t, srv, tenantC, "wrong", nil), "AADSTS700016")
}

func TestV1ResourceRequest(t *testing.T) {
	srv := newServer(t)
	srv.SetLifetime(20 * time.Second)
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {secret}, "resource": {audience}}
	resp, body := rawToken(t, srv, "/"+domainA+"/oauth2/token", form)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("v1 token: %s %s", resp.Status, body)
	}
	m := decode(t, body)
	if m["token_type"] != "Bearer" || m["expires_in"] != "20" || m["resource"] != audience {
		t.Errorf("v1 response %s: want token_type Bearer, expires_in \"20\", resource %s", body, audience)
	}
	claims := mustClaims(t, m["access_token"].(string))
	if claims["aud"] != audience || claims["tid"] != tenantA || claims["ver"] != "1.0" {
		t.Errorf("claims %v", claims)
	}
	if want := claims["exp"].(float64); m["expires_on"] != big.NewInt(int64(want)).String() {
		t.Errorf("expires_on %v, want the JWT exp %v", m["expires_on"], want)
	}
	if n := srv.TokenRequests(tenantA); n != 1 {
		t.Errorf("TokenRequests = %d, want 1", n)
	}
}

func TestTokenEndpointErrors(t *testing.T) {
	srv := newServer(t)
	v2 := "/" + tenantA + "/oauth2/v2.0/token"
	for _, tc := range []struct {
		name   string
		method string
		path   string
		form   url.Values
		status int
		err    string
		code   float64
	}{
		{"missing secret", "POST", v2, v2Form("", scope), 400, "invalid_client", 7000218},
		{"wrong secret", "POST", v2, v2Form("nope", scope), 401, "invalid_client", 7000215},
		{"two resources", "POST", v2, v2Form(secret, scope+" https://graph.microsoft.com/.default"), 400, "invalid_scope", 1002012},
		{"delegated scope", "POST", v2, v2Form(secret, "https://graph.microsoft.com/User.Read"), 400, "invalid_scope", 1002012},
		{"bare .default", "POST", v2, v2Form(secret, "/.default"), 400, "invalid_scope", 1002012},
		{"openid only", "POST", v2, v2Form(secret, "openid profile offline_access"), 400, "invalid_scope", 1002012},
		{"missing scope", "POST", v2, v2Form(secret, ""), 400, "invalid_request", 900144},
		{"password grant", "POST", v2, url.Values{"grant_type": {"password"}, "client_id": {appID}, "client_secret": {secret}}, 400, "unsupported_grant_type", 70003},
		{"missing grant", "POST", v2, url.Values{"client_id": {appID}, "client_secret": {secret}}, 400, "invalid_request", 900144},
		{"missing client_id", "POST", v2, url.Values{"grant_type": {"client_credentials"}, "client_secret": {secret}, "scope": {scope}}, 400, "invalid_request", 900144},
		{"unknown tenant", "POST", "/nowhere.example/oauth2/v2.0/token", v2Form(secret, scope), 400, "invalid_request", 90002},
		{"not consented", "POST", "/" + tenantC + "/oauth2/v2.0/token", v2Form(secret, scope), 400, "unauthorized_client", 700016},
		{"unknown app", "POST", v2, url.Values{"grant_type": {"client_credentials"}, "client_id": {"not-registered"}, "client_secret": {secret}, "scope": {scope}}, 400, "unauthorized_client", 700016},
		{"v1 missing resource", "POST", "/" + tenantA + "/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {secret}}, 400, "invalid_request", 900144},
		{"GET", "GET", v2, nil, 405, "invalid_request", 900561},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL()+tc.path, strings.NewReader(tc.form.Encode()))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("client-request-id", correlationID)
			resp, body := do(t, srv.Client(), req)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			checkEntraError(t, resp, body, tc.err, tc.code)
			if strings.Contains(string(body), secret) {
				t.Errorf("body echoes the client secret: %s", body)
			}
		})
	}
	if n := srv.TotalTokenRequests(); n != 15 {
		t.Errorf("TotalTokenRequests = %d, want 15 (every request counts)", n)
	}
	if n := srv.TokenRequests("NOWHERE.example"); n != 1 {
		t.Errorf("TokenRequests(unknown tenant) = %d, want 1", n)
	}
}

// checkEntraError checks that body is Entra's error shape for the OAuth error and AADSTS code.
func checkEntraError(t *testing.T, resp *http.Response, body []byte, oauthErr string, code float64) {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	m := decode(t, body)
	desc, _ := m["error_description"].(string)
	traceID, _ := m["trace_id"].(string)
	prefix := "AADSTS" + big.NewInt(int64(code)).String() + ": "
	switch {
	case m["error"] != oauthErr:
		t.Errorf("error %v, want %s", m["error"], oauthErr)
	case !slices.Equal(m["error_codes"].([]any), []any{code}):
		t.Errorf("error_codes %v, want [%v]", m["error_codes"], code)
	case !strings.HasPrefix(desc, prefix):
		t.Errorf("error_description %q does not start with %q", desc, prefix)
	case traceID == "" || !strings.Contains(desc, "Trace ID: "+traceID):
		t.Errorf("error_description %q does not carry trace_id %q", desc, traceID)
	case m["correlation_id"] != correlationID || !strings.Contains(desc, "Correlation ID: "+correlationID):
		t.Errorf("correlation_id %v, want the client-request-id %s", m["correlation_id"], correlationID)
	case m["timestamp"] == "" || !strings.Contains(desc, "Timestamp: "):
		t.Errorf("no timestamp in %s", body)
	case m["error_uri"] != "https://login.microsoftonline.com/error?code="+big.NewInt(int64(code)).String():
		t.Errorf("error_uri %v", m["error_uri"])
	}
}

func TestDiscoveryDocuments(t *testing.T) {
	srv := newServer(t)
	resp, body := rawGet(t, srv.Client(), srv.URL()+"/CONTOSO.onmicrosoft.com/v2.0/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("v2 discovery: %s %s", resp.Status, body)
	}
	m := decode(t, body)
	base := srv.URL() + "/" + tenantA
	for k, want := range map[string]string{
		"issuer":                 base + "/v2.0",
		"token_endpoint":         base + "/oauth2/v2.0/token",
		"authorization_endpoint": base + "/oauth2/v2.0/authorize",
		"jwks_uri":               base + "/discovery/v2.0/keys",
	} {
		if m[k] != want {
			t.Errorf("v2 %s = %v, want %s", k, m[k], want)
		}
	}

	resp, body = rawGet(t, srv.Client(), srv.URL()+"/"+tenantA+"/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("v1 discovery: %s %s", resp.Status, body)
	}
	m = decode(t, body)
	if m["issuer"] != "https://sts.windows.net/"+tenantA+"/" || m["token_endpoint"] != base+"/oauth2/token" {
		t.Errorf("v1 discovery %s", body)
	}
	if n := srv.DiscoveryRequests(tenantA); n != 2 {
		t.Errorf("DiscoveryRequests = %d, want 2", n)
	}

	resp, body = rawGet(t, srv.Client(), srv.URL()+"/nowhere.example/v2.0/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown tenant discovery: status %d, want 400", resp.StatusCode)
	}
	if m := decode(t, body); m["error"] != "invalid_tenant" || !strings.HasPrefix(m["error_description"].(string), "AADSTS90002: Tenant 'nowhere.example' not found.") {
		t.Errorf("unknown tenant discovery body %s", body)
	}
}

func TestFault503RetryAfterThenClear(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, tenantA, secret, nil)
	srv.SetFault(tenantA, &entratest.Fault{Status: http.StatusServiceUnavailable, RetryAfter: "7"})

	for range 2 {
		err := wantErrContains(t, c, "AADSTS90033", "temporarily_unavailable")
		var ce msalerrors.CallErr
		if !errors.As(err, &ce) {
			t.Fatalf("want an msal CallErr, got %T %v", err, err)
		}
		if ce.Resp.StatusCode != http.StatusServiceUnavailable || ce.Resp.Header.Get("Retry-After") != "7" {
			t.Errorf("status %d Retry-After %q, want 503 and 7", ce.Resp.StatusCode, ce.Resp.Header.Get("Retry-After"))
		}
	}
	srv.SetFault(tenantA, nil)
	mustAcquire(t, c)
	if n := srv.TokenRequests(tenantA); n != 3 {
		t.Errorf("TokenRequests = %d, want 3 (faulted requests count)", n)
	}
}

func TestFaultDefaultBodiesAndRawBody(t *testing.T) {
	srv := newServer(t)
	path := "/" + tenantA + "/oauth2/v2.0/token"
	date := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat)
	for _, tc := range []struct {
		status     int
		retryAfter string
		err        string
		code       float64
	}{
		{http.StatusTooManyRequests, "30", "temporarily_unavailable", 50196},
		{http.StatusServiceUnavailable, date, "temporarily_unavailable", 90033},
		{http.StatusInternalServerError, "", "server_error", 50000},
		{http.StatusBadGateway, "", "server_error", 50000},
	} {
		srv.SetFault(tenantA, &entratest.Fault{Status: tc.status, RetryAfter: tc.retryAfter})
		resp, body := rawToken(t, srv, path, v2Form(secret, scope))
		if resp.StatusCode != tc.status || resp.Header.Get("Retry-After") != tc.retryAfter {
			t.Errorf("status %d Retry-After %q, want %d %q", resp.StatusCode, resp.Header.Get("Retry-After"), tc.status, tc.retryAfter)
		}
		checkEntraError(t, resp, body, tc.err, tc.code)
	}

	srv.SetFault(tenantA, &entratest.Fault{Status: http.StatusBadGateway, Body: "<html>Bad Gateway</html>"})
	resp, body := rawToken(t, srv, path, v2Form(secret, scope))
	if resp.StatusCode != http.StatusBadGateway || string(body) != "<html>Bad Gateway</html>" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("raw body fault: %s %q %q", resp.Status, resp.Header.Get("Content-Type"), body)
	}

	// A 200 with a malformed body: MSAL must fail rather than accept it.
	srv.SetFault(tenantA, &entratest.Fault{Status: http.StatusOK, Body: "this is not JSON"})
	wantErrContains(t, newClient(t, srv, tenantA, secret, nil), "this is not JSON")
}

func TestFaultTimesClearsItself(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, tenantA, secret, nil)
	srv.SetFault(tenantA, &entratest.Fault{Status: http.StatusInternalServerError, Times: 2})
	wantErrContains(t, c, "AADSTS50000", "server_error")
	wantErrContains(t, c, "AADSTS50000")
	mustAcquire(t, c)
	mustAcquire(t, c)
	if n := srv.TokenRequests(tenantA); n != 4 {
		t.Errorf("TokenRequests = %d, want 4", n)
	}
}

func TestFaultScopes(t *testing.T) {
	srv := newServer(t)
	a := newClient(t, srv, tenantA, secret, nil)
	b := newClient(t, srv, tenantB, secret, nil)

	// A tenant's own fault applies only to it.
	srv.SetFault(domainA, &entratest.Fault{Status: http.StatusInternalServerError})
	wantErrContains(t, a, "AADSTS50000")
	mustAcquire(t, b)

	// The every-tenant fault applies where no tenant fault is set; the tenant fault wins.
	srv.SetFault("", &entratest.Fault{Status: http.StatusTooManyRequests})
	wantErrContains(t, a, "AADSTS50000")
	wantErrContains(t, b, "AADSTS50196")
	resp, _ := rawToken(t, srv, "/nowhere.example/oauth2/v2.0/token", v2Form(secret, scope))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("unknown tenant under the every-tenant fault: status %d, want 429", resp.StatusCode)
	}

	srv.SetFault("", nil)
	srv.SetFault(tenantA, nil)
	mustAcquire(t, a)
	mustAcquire(t, b)
}

func TestFaultDelayHonouredAndCancellable(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, tenantA, secret, nil)
	mustAcquire(t, c) // discovery done, so the next request goes straight to the token endpoint

	srv.SetFault(tenantA, &entratest.Fault{Delay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.AcquireTokenByCredential(ctx, scopes)
		done <- err
	}()
	brokertest.WaitFor(t, "the delayed token request", func() bool { return srv.TokenRequests(tenantA) == 2 })
	select {
	case err := <-done:
		t.Fatalf("answered during an hour's delay: %v", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}

	// A delay that ends lets the request proceed normally.
	srv.SetFault(tenantA, &entratest.Fault{Delay: 10 * time.Millisecond, Times: 1})
	mustAcquire(t, c)
}

func TestCloseAbortsDelayedRequests(t *testing.T) {
	srv, err := entratest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	srv.SetFault("", &entratest.Fault{Delay: time.Hour})
	done := make(chan error, 1)
	go func() {
		resp, err := srv.Client().PostForm(srv.URL()+"/any/oauth2/v2.0/token", v2Form(secret, scope))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	brokertest.WaitFor(t, "the delayed token request", func() bool { return srv.TotalTokenRequests() == 1 })
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close is blocked by a delayed request")
	}
	if err := <-done; err == nil {
		t.Error("the delayed request got an answer, want the connection aborted")
	}
}

func TestCorruptWrongTenantID(t *testing.T) {
	srv := newServer(t)
	srv.SetFault(tenantA, &entratest.Fault{WrongTenantID: tenantB, Times: 1})
	c := newClient(t, srv, tenantA, secret, nil)
	claims := mustClaims(t, mustAcquire(t, c).AccessToken)
	if claims["tid"] != tenantB || claims["iss"] != "https://sts.windows.net/"+tenantB+"/" {
		t.Errorf("tid %v iss %v, want the wrong tenant %s", claims["tid"], claims["iss"], tenantB)
	}
	if tid := mustClaims(t, mustAcquire(t, c).AccessToken)["tid"]; tid != tenantA {
		t.Errorf("after Times ran out: tid %v, want %s", tid, tenantA)
	}
}

func TestCorruptNotJWT(t *testing.T) {
	srv := newServer(t)
	srv.SetFault(tenantA, &entratest.Fault{NotJWT: true})
	ar := mustAcquire(t, newClient(t, srv, tenantA, secret, nil))
	if ar.AccessToken == "" {
		t.Fatal("empty access token")
	}
	if _, err := entratest.Claims(ar.AccessToken); err == nil {
		t.Errorf("Claims(%q) succeeded, want an error for an opaque token", ar.AccessToken)
	}
	if !slices.Contains(srv.Issued(), ar.AccessToken) {
		t.Error("the opaque token is missing from Issued()")
	}
}

func TestCorruptExpiresIn(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, tenantA, secret, nil)
	v2 := "/" + tenantA + "/oauth2/v2.0/token"

	srv.SetFault(tenantA, &entratest.Fault{ExpiresIn: new(-1)})
	_, body := rawToken(t, srv, v2, v2Form(secret, scope))
	if _, ok := decode(t, body)["expires_in"]; ok {
		t.Errorf("expires_in present in %s", body)
	}
	wantErrContains(t, c, "expires_in")
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {secret}, "resource": {audience}}
	_, body = rawToken(t, srv, "/"+tenantA+"/oauth2/token", form)
	if m := decode(t, body); m["expires_in"] != nil || m["expires_on"] != nil || m["access_token"] == nil {
		t.Errorf("v1 with ExpiresIn -1: %s", body)
	}

	five := 5
	srv.SetFault(tenantA, &entratest.Fault{ExpiresIn: &five})
	five = 6 // the server keeps its own copy
	_, body = rawToken(t, srv, v2, v2Form(secret, scope))
	if m := decode(t, body); m["expires_in"] != 5.0 {
		t.Errorf("expires_in %v, want 5", m["expires_in"])
	}
	before := time.Now()
	ar := mustAcquire(t, c)
	if ar.ExpiresOn.Before(before.Add(5*time.Second)) || ar.ExpiresOn.After(time.Now().Add(5*time.Second)) {
		t.Errorf("ExpiresOn %v, want about 5s from now", ar.ExpiresOn)
	}
	// The JWT's exp follows the expires_in sent, as at Entra ID.
	if c := mustClaims(t, ar.AccessToken); c["exp"].(float64)-c["iat"].(float64) != 5 {
		t.Errorf("exp %v, iat %v: want exp 5s after iat, as expires_in says", c["exp"], c["iat"])
	}
}

func TestCorruptExpiresInRaw(t *testing.T) {
	srv := newServer(t)
	srv.SetFault(tenantA, &entratest.Fault{ExpiresInRaw: "soon", ExpiresIn: new(5)})
	_, body := rawToken(t, srv, "/"+tenantA+"/oauth2/v2.0/token", v2Form(secret, scope))
	if m := decode(t, body); m["expires_in"] != "soon" || m["access_token"] == nil {
		t.Errorf("v2 with ExpiresInRaw: %s", body)
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {appID}, "client_secret": {secret}, "resource": {audience}}
	_, body = rawToken(t, srv, "/"+tenantA+"/oauth2/token", form)
	if m := decode(t, body); m["expires_in"] != "soon" || m["expires_on"] != "soon" {
		t.Errorf("v1 with ExpiresInRaw: %s", body)
	}
	// MSAL cannot use it (its error quotes the whole body).
	var je msalerrors.InvalidJsonErr
	if err := wantErrContains(t, newClient(t, srv, tenantA, secret, nil), "soon"); !errors.As(err, &je) {
		t.Errorf("MSAL's error is %T, want an InvalidJsonErr", err)
	}
	// The token's exp is the ordinary one: ExpiresIn gives way to ExpiresInRaw.
	issued := srv.Issued()
	if c := mustClaims(t, issued[len(issued)-1]); c["exp"].(float64)-c["iat"].(float64) != 3600 {
		t.Errorf("exp %v, iat %v: want the default lifetime", c["exp"], c["iat"])
	}
}

func TestCorruptExpOffset(t *testing.T) {
	srv := newServer(t)
	srv.SetFault(tenantA, &entratest.Fault{ExpOffset: -24 * time.Hour})
	ar := mustAcquire(t, newClient(t, srv, tenantA, secret, nil))
	c := mustClaims(t, ar.AccessToken)
	if got := c["exp"].(float64) - c["iat"].(float64); got != 3600-24*3600 {
		t.Errorf("exp - iat = %v, want a day less than the lifetime", got)
	}
	if ar.ExpiresOn.Before(time.Now().Add(59 * time.Minute)) {
		t.Errorf("ExpiresOn %v: expires_in should still say an hour", ar.ExpiresOn)
	}
	verifyRS256(t, srv, ar.AccessToken)
}

func TestCorruptPadBody(t *testing.T) {
	srv := newServer(t)
	const pad = 1 << 20
	srv.SetFault(tenantA, &entratest.Fault{PadBody: pad})
	resp, body := rawToken(t, srv, "/"+tenantA+"/oauth2/v2.0/token", v2Form(secret, scope))
	if resp.ContentLength != -1 {
		t.Errorf("Content-Length %d, want none (a streamed body)", resp.ContentLength)
	}
	m := decode(t, body)
	if p, _ := m["padding"].(string); len(p) != pad || len(body) < pad {
		t.Errorf("padding of %d bytes in a body of %d, want %d", len(p), len(body), pad)
	}
	if m["access_token"] != srv.Issued()[0] || m["expires_in"] != 3600.0 {
		t.Errorf("the padded body lost its token response: %.200s", body)
	}
	// MSAL reads it whole (nothing caps it there) and takes the token.
	mustAcquire(t, newClient(t, srv, tenantA, secret, nil))
}

func TestCorruptTokenSize(t *testing.T) {
	srv := newServer(t)
	const size = 1 << 20
	srv.SetFault(tenantA, &entratest.Fault{TokenSize: size})
	ar := mustAcquire(t, newClient(t, srv, tenantA, secret, nil))
	if len(ar.AccessToken) < size || len(ar.AccessToken) > size+size/100 {
		t.Errorf("token of %d bytes, want about %d", len(ar.AccessToken), size)
	}
	verifyRS256(t, srv, ar.AccessToken)
	if c := mustClaims(t, ar.AccessToken); c["tid"] != tenantA || c["exp"].(float64)-c["iat"].(float64) != 3600 {
		t.Errorf("padded token claims tid %v exp %v iat %v", c["tid"], c["exp"], c["iat"])
	}
	if !slices.Contains(srv.Issued(), ar.AccessToken) {
		t.Error("the padded token is missing from Issued()")
	}
}

func TestRefreshIn(t *testing.T) {
	srv := newServer(t)
	v2 := "/" + tenantA + "/oauth2/v2.0/token"
	_, body := rawToken(t, srv, v2, v2Form(secret, scope))
	if m := decode(t, body); m["refresh_in"] != nil || m["expires_in"] != 3600.0 || m["ext_expires_in"] != 3600.0 {
		t.Errorf("default response %s: want expires_in 3600 and no refresh_in", body)
	}
	srv.SetRefreshIn(20 * time.Second)
	_, body = rawToken(t, srv, v2, v2Form(secret, scope))
	if m := decode(t, body); m["refresh_in"] != 20.0 || m["token_type"] != "Bearer" {
		t.Errorf("response %s: want refresh_in 20", body)
	}
	if ar := mustAcquire(t, newClient(t, srv, tenantA, secret, nil)); ar.Metadata.RefreshOn.IsZero() {
		t.Error("MSAL saw no refresh_in")
	}
}

// recorder is an http.RoundTripper that keeps every response's headers and body.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	var hdr strings.Builder
	if err := resp.Header.Write(&hdr); err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.seen = append(r.seen, hdr.String()+"\n"+string(body))
	r.mu.Unlock()
	return resp, nil
}

func TestNeverEchoesSecret(t *testing.T) {
	srv := newServer(t)
	rec := &recorder{next: srv.Client().Transport}
	hc := &http.Client{Transport: rec}
	const wrong = "Wr0ng~secret.value-that-must-not-come-back"

	var errs []error
	for _, tc := range []struct{ tenant, secret string }{
		{tenantA, secret}, {tenantA, wrong}, {tenantC, secret}, {"nowhere.example", secret},
	} {
		_, err := acquire(t, newClient(t, srv, tc.tenant, tc.secret, hc))
		errs = append(errs, err)
	}
	srv.SetFault(tenantA, &entratest.Fault{Status: http.StatusServiceUnavailable})
	_, err := acquire(t, newClient(t, srv, tenantA, secret, hc))
	errs = append(errs, err)
	srv.SetFault(tenantA, nil)
	for _, form := range []url.Values{
		v2Form(secret, "bad scope"), v2Form(wrong, scope),
		{"grant_type": {"password"}, "client_id": {appID}, "client_secret": {secret}},
	} {
		resp, err := hc.PostForm(srv.URL()+"/"+tenantA+"/oauth2/v2.0/token", form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	if len(rec.seen) < 10 {
		t.Fatalf("recorded %d responses, want at least 10", len(rec.seen))
	}
	for _, s := range rec.seen {
		if strings.Contains(s, secret) || strings.Contains(s, wrong) {
			t.Errorf("a response contains a client secret:\n%s", s)
		}
	}
	for _, err := range errs[1:] {
		if err == nil {
			t.Fatal("a failing acquisition succeeded")
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), wrong) {
			t.Errorf("an MSAL error contains a client secret: %v", err)
		}
	}
}

func TestConcurrentAcquisitions(t *testing.T) {
	srv := newServer(t)
	const n = 16
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tenant := []string{tenantA, tenantB}[i%2]
			ar, err := acquire(t, newClient(t, srv, tenant, secret, nil))
			if err != nil {
				t.Errorf("acquisition %d: %v", i, err)
				return
			}
			if tid := mustClaims(t, ar.AccessToken)["tid"]; tid != tenant {
				t.Errorf("acquisition %d: tid %v, want %s", i, tid, tenant)
			}
		})
	}
	wg.Wait()
	if got := srv.TotalTokenRequests(); got != n {
		t.Errorf("TotalTokenRequests = %d, want %d", got, n)
	}
	if a, b := srv.TokenRequests(tenantA), srv.TokenRequests(tenantB); a != n/2 || b != n/2 {
		t.Errorf("TokenRequests A %d B %d, want %d each", a, b, n/2)
	}
	if got := len(srv.Issued()); got != n {
		t.Errorf("Issued %d tokens, want %d", got, n)
	}
}

func TestCertPEMIsTrustable(t *testing.T) {
	srv := newServer(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.CertPEM()) {
		t.Fatalf("CertPEM is not a PEM certificate: %s", srv.CertPEM())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	resp, body := rawGet(t, client, srv.URL()+"/"+tenantA+"/v2.0/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s", resp.Status, body)
	}
	if !strings.HasPrefix(srv.URL(), "https://127.0.0.1:") {
		t.Errorf("URL %s, want https://127.0.0.1:PORT", srv.URL())
	}

	// An untrusting client is refused: the server does not use a well-known certificate.
	if _, err := http.Get(srv.URL() + "/" + tenantA + "/v2.0/.well-known/openid-configuration"); err == nil {
		t.Error("a client without CertPEM trusted the server")
	}
}

func TestClaimsRejectsNonJWT(t *testing.T) {
	for _, tok := range []string{"", "opaque", "a.b", "a.!!!.c", "a." + base64.RawURLEncoding.EncodeToString([]byte("[1]")) + ".c"} {
		if _, err := entratest.Claims(tok); err == nil {
			t.Errorf("Claims(%q) succeeded", tok)
		}
	}
}

func TestSetLifetimeRejectsSubSecond(t *testing.T) {
	srv := newServer(t)
	defer func() {
		if recover() == nil {
			t.Error("SetLifetime(500ms) did not panic")
		}
	}()
	srv.SetLifetime(500 * time.Millisecond)
}
