package entratest_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
)

const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// newCert makes a certificate valid from an hour ago for the given time.
func newCert(t *testing.T, valid time.Duration) (*x509.Certificate, *rsa.PrivateKey, []byte) {
	t.Helper()
	now := time.Now()
	cert, key, pemData, err := entratest.NewCertificate("tokenbroker test", now.Add(-time.Hour), now.Add(valid))
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pemData
}

// newCertClient returns a real MSAL confidential client that authenticates with a certificate.
func newCertClient(t *testing.T, srv *entratest.Server, tenant string, pemData []byte, opts ...confidential.Option) confidential.Client {
	t.Helper()
	certs, key, err := confidential.CertFromPEM(pemData, "")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := confidential.NewCredFromCert(certs, key)
	if err != nil {
		t.Fatal(err)
	}
	return newCredClient(t, srv, tenant, cred, opts...)
}

func newCredClient(t *testing.T, srv *entratest.Server, tenant string, cred confidential.Credential, opts ...confidential.Option) confidential.Client {
	t.Helper()
	opts = append([]confidential.Option{
		confidential.WithInstanceDiscovery(false),
		confidential.WithHTTPClient(srv.Client()),
		confidential.WithCache(noCache{}),
	}, opts...)
	c, err := confidential.New(srv.URL()+"/"+tenant, appID, cred, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// lastAuth returns the most recent successful client authentication for a tenant.
func lastAuth(t *testing.T, srv *entratest.Server, tenant string) entratest.ClientAuth {
	t.Helper()
	auths := srv.ClientAuths(tenant)
	if len(auths) == 0 {
		t.Fatalf("no client authentication recorded for %s", tenant)
	}
	return auths[len(auths)-1]
}

func tokenEndpoint(srv *entratest.Server, tenant string) string {
	return srv.URL() + "/" + tenant + "/oauth2/v2.0/token"
}

// certClaims are the claims MSAL puts in a certificate assertion.
func certClaims(aud string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"aud": aud, "iss": appID, "sub": appID, "jti": "a7f3c1d2-0000-4000-8000-000000000001",
		"nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
}

// sign makes a compact JWS with the given header members (nil deletes one) and claims.
func sign(t *testing.T, m jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
		} else {
			tok.Header[k] = v
		}
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func x5t(cert *x509.Certificate, enc *base64.Encoding) string {
	sum := sha1.Sum(cert.Raw)
	return enc.EncodeToString(sum[:])
}

func x5tS256(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// assertionForm is a v2 client-credentials request authenticated by an assertion.
func assertionForm(assertion string) url.Values {
	return url.Values{
		"grant_type": {"client_credentials"}, "client_id": {appID}, "scope": {scope},
		"client_assertion_type": {assertionType}, "client_assertion": {assertion},
	}
}

// wantEntraError checks an Entra error answer and returns its error_description.
func wantEntraError(t *testing.T, resp *http.Response, body []byte, status int, errCode string, code float64) string {
	t.Helper()
	m := decode(t, body)
	codes, _ := m["error_codes"].([]any)
	if resp.StatusCode != status || m["error"] != errCode || len(codes) != 1 || codes[0] != code {
		t.Fatalf("got %s %s, want %d %s AADSTS%v", resp.Status, body, status, errCode, code)
	}
	desc, _ := m["error_description"].(string)
	return desc
}

func TestCertificateMSAL(t *testing.T) {
	srv := newServer(t)
	cert, _, pemData := newCert(t, 24*time.Hour)
	srv.AddCertificate(appID, cert)
	srv.RemoveSecret(appID)

	ar := mustAcquire(t, newCertClient(t, srv, tenantA, pemData))
	c := mustClaims(t, ar.AccessToken)
	if c["appid"] != appID || c["tid"] != tenantA || c["appidacr"] != "2" {
		t.Errorf("claims appid %v tid %v appidacr %v, want %s %s 2", c["appid"], c["tid"], c["appidacr"], appID, tenantA)
	}
	a := lastAuth(t, srv, tenantA)
	if a.Method != "certificate" || a.Thumbprint != entratest.Thumbprint(cert) || a.Alg != "PS256" || a.X5C ||
		a.ClientID != appID || a.Audience != tokenEndpoint(srv, tenantA) || a.Assertion == "" {
		t.Errorf("ClientAuth %+v: want MSAL's PS256 certificate assertion without x5c", a)
	}

	// With x5c (subject name and issuer authentication), and by domain: MSAL takes the token
	// endpoint, and so the aud, from the discovery document, which names the tenant by ID.
	mustAcquire(t, newCertClient(t, srv, domainA, pemData, confidential.WithX5C()))
	if a := lastAuth(t, srv, tenantA); a.Method != "certificate" || !a.X5C || a.Thumbprint != entratest.Thumbprint(cert) {
		t.Errorf("ClientAuth %+v: want a certificate assertion with x5c", a)
	}
	if n := len(srv.ClientAuths(domainA)); n != 2 {
		t.Errorf("ClientAuths(domain) has %d entries, want the tenant's 2", n)
	}
}

func TestCertificateMSALRefused(t *testing.T) {
	srv := newServer(t)
	registered, _, _ := newCert(t, 24*time.Hour)
	srv.AddCertificate(appID, registered)

	// Another certificate (same key, different thumbprint) is not registered.
	_, _, other := newCert(t, 24*time.Hour)
	wantErrContains(t, newCertClient(t, srv, tenantA, other), "AADSTS700027", "invalid_client",
		"is not registered on application")

	// A registered certificate past its NotAfter.
	now := time.Now()
	expired, _, expiredPEM, err := entratest.NewCertificate("expired", now.Add(-48*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv.AddCertificate(appID, expired)
	wantErrContains(t, newCertClient(t, srv, tenantA, expiredPEM), "AADSTS700027", "The key used is expired")

	// A secret client cannot use a certificate-only app.
	srv.RemoveSecret(appID)
	wantErrContains(t, newClient(t, srv, tenantA, secret, nil), "AADSTS7000215")
	if n := len(srv.ClientAuths(tenantA)); n != 0 {
		t.Errorf("%d client authentications recorded, want none", n)
	}
}

func TestCertificateHandMadeAssertions(t *testing.T) {
	srv := newServer(t)
	srv.RemoveSecret(appID)
	cert, key, _ := newCert(t, 24*time.Hour)
	srv.AddCertificate(appID, cert)
	v2 := "/" + tenantA + "/oauth2/v2.0/token"
	v1 := "/" + tenantA + "/oauth2/token"

	for _, tc := range []struct {
		name   string
		path   string
		m      jwt.SigningMethod
		header map[string]any
		aud    string
	}{
		{"RS256 x5t base64url", v2, jwt.SigningMethodRS256, map[string]any{"x5t": x5t(cert, base64.RawURLEncoding)}, tokenEndpoint(srv, tenantA)},
		{"RS256 x5t std base64", v2, jwt.SigningMethodRS256, map[string]any{"x5t": x5t(cert, base64.StdEncoding)}, tokenEndpoint(srv, tenantA)},
		{"PS256 x5t#S256 base64url", v2, jwt.SigningMethodPS256, map[string]any{"x5t#S256": x5tS256(cert)}, tokenEndpoint(srv, tenantA)},
		{"v1 audience at v2", v2, jwt.SigningMethodRS256, map[string]any{"x5t": x5t(cert, base64.RawURLEncoding)}, srv.URL() + v1},
		{"domain audience", v2, jwt.SigningMethodRS256, map[string]any{"x5t": x5t(cert, base64.RawURLEncoding)}, tokenEndpoint(srv, domainA)},
		{"at the v1 endpoint", v1, jwt.SigningMethodPS256, map[string]any{"x5t#S256": x5tS256(cert)}, srv.URL() + v1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertion := sign(t, tc.m, key, tc.header, certClaims(tc.aud))
			form := assertionForm(assertion)
			if tc.path == v1 {
				form.Del("scope")
				form.Set("resource", audience)
			}
			resp, body := rawToken(t, srv, tc.path, form)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s", resp.Status, body)
			}
			a := lastAuth(t, srv, tenantA)
			if a.Method != "certificate" || a.Alg != tc.m.Alg() || a.Assertion != assertion || a.Audience != tc.aud {
				t.Errorf("ClientAuth %+v", a)
			}
		})
	}
}

func TestCertificateAssertionRejected(t *testing.T) {
	srv := newServer(t)
	srv.AddTenant(entratest.Tenant{ID: tenantB, ConsentedApps: []string{appID}})
	cert, key, _ := newCert(t, 24*time.Hour)
	srv.AddCertificate(appID, cert)
	now := time.Now()
	unregistered, _, _ := newCert(t, time.Hour)
	expiredCert, _, _, err := entratest.NewCertificate("expired", now.Add(-48*time.Hour), now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	futureCert, _, _, err := entratest.NewCertificate("future", now.Add(time.Hour), now.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	srv.AddCertificate(appID, expiredCert)
	srv.AddCertificate(appID, futureCert)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048) // not the certificate's key
	if err != nil {
		t.Fatal(err)
	}

	ep := tokenEndpoint(srv, tenantA)
	good := map[string]any{"x5t#S256": x5tS256(cert)}
	with := func(f func(jwt.MapClaims)) jwt.MapClaims { c := certClaims(ep); f(c); return c }
	ps := func(header map[string]any, claims jwt.MapClaims) string {
		return sign(t, jwt.SigningMethodPS256, key, header, claims)
	}
	valid := ps(good, certClaims(ep))
	tampered := valid[:len(valid)-4] + "AAAA"

	for _, tc := range []struct {
		name      string
		assertion string
		form      url.Values // overrides
		status    int
		err       string
		code      float64
		desc      string
	}{
		{"unregistered certificate", ps(map[string]any{"x5t#S256": x5tS256(unregistered)}, certClaims(ep)), nil, 401, "invalid_client", 700027, "is not registered on application"},
		{"expired certificate", ps(map[string]any{"x5t#S256": x5tS256(expiredCert)}, certClaims(ep)), nil, 401, "invalid_client", 700027, "The key used is expired"},
		{"certificate not yet valid", ps(map[string]any{"x5t#S256": x5tS256(futureCert)}, certClaims(ep)), nil, 401, "invalid_client", 700027, "not yet valid"},
		{"bad signature", tampered, nil, 401, "invalid_client", 700027, "failed signature validation"},
		{"signed by another key", sign(t, jwt.SigningMethodRS256, otherKey, good, certClaims(ep)), nil, 401, "invalid_client", 700027, "failed signature validation"},
		{"no thumbprint", ps(map[string]any{}, certClaims(ep)), nil, 401, "invalid_client", 700027, "not registered"},
		{"thumbprint of the wrong size", ps(map[string]any{"x5t": x5tS256(cert)}, certClaims(ep)), nil, 401, "invalid_client", 700027, "not registered"},
		{"x5c of another certificate", ps(map[string]any{"x5t#S256": x5tS256(cert), "x5c": []string{base64.StdEncoding.EncodeToString(unregistered.Raw)}}, certClaims(ep)), nil, 401, "invalid_client", 700027, "x5c"},
		{"expired assertion", ps(good, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() })), nil, 401, "invalid_client", 700024, "not within its valid time range"},
		{"assertion not yet valid", ps(good, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(10 * time.Minute).Unix() })), nil, 401, "invalid_client", 700024, "assertion valid from"},
		{"no exp", ps(good, with(func(c jwt.MapClaims) { delete(c, "exp") })), nil, 400, "invalid_request", 50027, "'exp'"},
		{"no jti", ps(good, with(func(c jwt.MapClaims) { delete(c, "jti") })), nil, 400, "invalid_request", 50027, "'jti'"},
		{"sub is not the client", ps(good, with(func(c jwt.MapClaims) { c["sub"] = "someone-else" })), nil, 401, "invalid_client", 700021, "doesn't match 'client_id'"},
		{"audience of another tenant", ps(good, certClaims(tokenEndpoint(srv, tenantB))), nil, 401, "invalid_client", 700023, "audience"},
		{"audience of another host", ps(good, certClaims("https://login.microsoftonline.com/"+tenantA+"/oauth2/v2.0/token")), nil, 401, "invalid_client", 700023, "audience"},
		{"audience of the authorize endpoint", ps(good, certClaims(srv.URL()+"/"+tenantA+"/oauth2/v2.0/authorize")), nil, 401, "invalid_client", 700023, "audience"},
		{"audience with a query", ps(good, certClaims(ep+"?x=1")), nil, 401, "invalid_client", 700023, "audience"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, good, certClaims(ep)), nil, 400, "invalid_request", 50027, "'none' is not supported"},
		{"alg HS256", sign(t, jwt.SigningMethodHS256, []byte("a shared secret of 32 bytes....."), good, certClaims(ep)), nil, 400, "invalid_request", 50027, "'HS256' is not supported"},
		{"alg RS512", sign(t, jwt.SigningMethodRS512, key, good, certClaims(ep)), nil, 400, "invalid_request", 50027, "'RS512' is not supported"},
		{"not a JWT", "not-a-jwt", nil, 400, "invalid_request", 50027, "malformed"},
		{"claims not JSON", "eyJhbGciOiJQUzI1NiJ9.bm90IGpzb24.c2ln", nil, 400, "invalid_request", 50027, "malformed"},
		{"too large", ps(good, with(func(c jwt.MapClaims) { c["pad"] = strings.Repeat("x", 70<<10) })), nil, 400, "invalid_request", 50027, "larger than"},
		{"secret and assertion", valid, url.Values{"client_secret": {secret}}, 400, "invalid_request", 9002313, "Both"},
		{"other assertion type", valid, url.Values{"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:saml2-bearer"}}, 400, "invalid_request", 9002313, "client_assertion_type"},
		{"no assertion type", valid, url.Values{"client_assertion_type": {""}}, 400, "invalid_request", 900144, "client_assertion_type"},
		{"type without assertion", "", nil, 400, "invalid_request", 900144, "'client_assertion'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := assertionForm(tc.assertion)
			for k, v := range tc.form {
				form[k] = v
			}
			resp, body := rawToken(t, srv, "/"+tenantA+"/oauth2/v2.0/token", form)
			desc := wantEntraError(t, resp, body, tc.status, tc.err, tc.code)
			if !strings.Contains(desc, tc.desc) {
				t.Errorf("error_description %q does not contain %q", desc, tc.desc)
			}
			// Neither the assertion (a bearer credential while it lasts) nor a secret comes back.
			for _, part := range strings.Split(tc.assertion, ".") {
				if len(part) > 8 && strings.Contains(string(body), part) {
					t.Errorf("the answer quotes the assertion: %s", body)
				}
			}
			if strings.Contains(string(body), secret) {
				t.Errorf("the answer quotes the secret: %s", body)
			}
		})
	}
	if n := len(srv.ClientAuths(tenantA)); n != 0 {
		t.Errorf("%d client authentications recorded, want none", n)
	}
	// The same assertion, untouched, is accepted: the cases above failed for their one change.
	resp, body := rawToken(t, srv, "/"+tenantA+"/oauth2/v2.0/token", assertionForm(valid))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the valid assertion: %s %s", resp.Status, body)
	}
	if got := srv.Assertions(); len(got) < 20 || got[len(got)-1] != valid {
		t.Errorf("Assertions() has %d entries, want every one received, ending with the valid one", len(got))
	}
}

func TestRotateSecretToCertificate(t *testing.T) {
	srv := newServer(t)
	secretClient := newClient(t, srv, tenantA, secret, nil)
	mustAcquire(t, secretClient)

	cert, _, pemData := newCert(t, 24*time.Hour)
	srv.AddCertificate(appID, cert)
	certClient := newCertClient(t, srv, tenantA, pemData)
	mustAcquire(t, certClient)
	mustAcquire(t, secretClient) // both credentials work during the rotation

	srv.RemoveSecret(appID)
	wantErrContains(t, secretClient, "AADSTS7000215")
	mustAcquire(t, certClient)

	var methods []string
	for _, a := range srv.ClientAuths(tenantA) {
		methods = append(methods, a.Method)
	}
	if got := strings.Join(methods, ","); got != "secret,certificate,secret,certificate" {
		t.Errorf("methods %s, want secret,certificate,secret,certificate", got)
	}

	if !srv.RemoveCertificate(appID, cert) || srv.RemoveCertificate(appID, cert) {
		t.Error("RemoveCertificate should report true once, then false")
	}
	wantErrContains(t, certClient, "AADSTS700027")
	srv.AddApp(appID, "new-secret") // a new secret works again
	mustAcquire(t, newClient(t, srv, tenantA, "new-secret", nil))
}

func TestFederatedMSAL(t *testing.T) {
	srv := newServer(t)
	srv.RemoveSecret(appID)
	issuer, err := entratest.NewIssuer("https://oidc.example.test/cluster-1")
	if err != nil {
		t.Fatal(err)
	}
	const sub = "system:serviceaccount:broker:brokerd"
	srv.AddFederatedCredential(appID, issuer.Credential(sub))

	assertion := issuer.Sign(sub, entratest.DefaultFederatedAudience, time.Hour)
	var gotOpts confidential.AssertionRequestOptions
	cred := confidential.NewCredFromAssertionCallback(func(_ context.Context, o confidential.AssertionRequestOptions) (string, error) {
		gotOpts = o
		return assertion, nil
	})
	c := newCredClient(t, srv, tenantA, cred)
	ar := mustAcquire(t, c)
	if gotOpts.ClientID != appID || gotOpts.TokenEndpoint != tokenEndpoint(srv, tenantA) {
		t.Errorf("MSAL asked for an assertion with %+v", gotOpts)
	}
	if c := mustClaims(t, ar.AccessToken); c["appidacr"] != "2" || c["appid"] != appID {
		t.Errorf("claims appidacr %v appid %v", c["appidacr"], c["appid"])
	}
	a := lastAuth(t, srv, tenantA)
	if a.Method != "federated" || a.Issuer != issuer.Issuer() || a.Subject != sub ||
		a.Audience != entratest.DefaultFederatedAudience || a.Assertion != assertion || a.Alg != "RS256" {
		t.Errorf("ClientAuth %+v", a)
	}

	// A new assertion (a rotated token file) is what the server sees next.
	assertion = issuer.Sign(sub, entratest.DefaultFederatedAudience, time.Hour)
	mustAcquire(t, c)
	if a := lastAuth(t, srv, tenantA); a.Assertion != assertion {
		t.Error("the server did not record the new assertion")
	}

	// An expired one is refused with AADSTS700024.
	assertion = issuer.Sign(sub, entratest.DefaultFederatedAudience, -time.Minute)
	wantErrContains(t, c, "AADSTS700024", "not within its valid time range")
}

func TestFederatedAssertionRejected(t *testing.T) {
	srv := newServer(t)
	const sub = "repo:contoso/broker:ref:refs/heads/main"
	issuer, err := entratest.NewIssuer("https://token.actions.githubusercontent.com")
	if err != nil {
		t.Fatal(err)
	}
	impostor, err := entratest.NewIssuer(issuer.Issuer()) // same name, another key
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := entratest.NewIssuer("")
	if err != nil {
		t.Fatal(err)
	}
	srv.AddFederatedCredential(appID, issuer.Credential(sub))
	srv.AddFederatedCredential(appID, entratest.FederatedCredential{
		Issuer: issuer.Issuer(), Subject: "repo:contoso/broker:environment:prod", Audience: "api://custom", Keys: issuer.Credential("").Keys,
	})
	aud := entratest.DefaultFederatedAudience
	now := time.Now()

	for _, tc := range []struct {
		name      string
		clientID  string
		assertion string
		status    int
		err       string
		code      float64
		desc      string
	}{
		{"unknown issuer", appID, stranger.Sign(sub, aud, time.Hour), 401, "invalid_client", 700211, "assertion issuer '" + stranger.Issuer() + "'"},
		{"unknown subject", appID, issuer.Sign("repo:contoso/other:ref:refs/heads/main", aud, time.Hour), 401, "invalid_client", 700213, "assertion subject 'repo:contoso/other:ref:refs/heads/main'"},
		{"wrong audience", appID, issuer.Sign(sub, "api://AzureADMyOrg", time.Hour), 401, "invalid_client", 700212, "assertion audience 'api://AzureADMyOrg'"},
		{"audience of another record", appID, issuer.Sign(sub, "api://custom", time.Hour), 401, "invalid_client", 700212, "audience"},
		{"expired", appID, issuer.Sign(sub, aud, -time.Second), 401, "invalid_client", 700024, "not within its valid time range"},
		{"not yet valid", appID, issuer.SignClaims(map[string]any{"iss": issuer.Issuer(), "sub": sub, "aud": aud,
			"nbf": now.Add(time.Hour).Unix(), "exp": now.Add(2 * time.Hour).Unix()}), 401, "invalid_client", 700024, "valid from"},
		{"no exp", appID, issuer.SignClaims(map[string]any{"iss": issuer.Issuer(), "sub": sub, "aud": aud}), 400, "invalid_request", 50027, "'exp'"},
		{"signed by another key", appID, impostor.Sign(sub, aud, time.Hour), 401, "invalid_client", 700027, "signature validation"},
		{"app without federated credentials", "11111111-2222-4333-8444-555555555555", issuer.Sign(sub, aud, time.Hour), 401, "invalid_client", 70025, "no configured federated identity credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.clientID != appID {
				srv.AddApp(tc.clientID, "irrelevant")
				srv.SetConsent(tenantA, tc.clientID, true)
			}
			form := assertionForm(tc.assertion)
			form.Set("client_id", tc.clientID)
			resp, body := rawToken(t, srv, "/"+tenantA+"/oauth2/v2.0/token", form)
			desc := wantEntraError(t, resp, body, tc.status, tc.err, tc.code)
			if !strings.Contains(desc, tc.desc) {
				t.Errorf("error_description %q does not contain %q", desc, tc.desc)
			}
			if sig := tc.assertion[strings.LastIndex(tc.assertion, ".")+1:]; strings.Contains(string(body), sig) {
				t.Errorf("the answer quotes the assertion: %s", body)
			}
		})
	}
	if n := len(srv.ClientAuths(tenantA)); n != 0 {
		t.Errorf("%d client authentications recorded, want none", n)
	}
	// The second record's own subject and audience match it.
	resp, body := rawToken(t, srv, "/"+tenantA+"/oauth2/v2.0/token",
		assertionForm(issuer.Sign("repo:contoso/broker:environment:prod", "api://custom", time.Hour)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s", resp.Status, body)
	}
	if a := lastAuth(t, srv, tenantA); a.Method != "federated" || a.Audience != "api://custom" {
		t.Errorf("ClientAuth %+v", a)
	}
}

func TestNewCertificate(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	c1, k1, pem1, err := entratest.NewCertificate("one", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c2, _, _, err := entratest.NewCertificate("two", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if c1.Subject.CommonName != "one" || !c1.NotBefore.Equal(now) || !c1.NotAfter.Equal(now.Add(time.Hour)) {
		t.Errorf("certificate %v valid %v to %v", c1.Subject, c1.NotBefore, c1.NotAfter)
	}
	if entratest.Thumbprint(c1) == entratest.Thumbprint(c2) {
		t.Error("two certificates share a thumbprint")
	}
	sum := sha1.Sum(c1.Raw)
	if got := entratest.Thumbprint(c1); len(got) != 40 || got != strings.ToUpper(hex.EncodeToString(sum[:])) {
		t.Errorf("Thumbprint %q, want the upper-case hex SHA-1 of the DER", got)
	}
	certs, key, err := confidential.CertFromPEM(pem1, "")
	if err != nil || len(certs) != 1 || !certs[0].Equal(c1) {
		t.Fatalf("CertFromPEM: %v, %d certificates", err, len(certs))
	}
	if rk, ok := key.(*rsa.PrivateKey); !ok || !rk.Equal(k1) || k1.N.BitLen() != 2048 {
		t.Errorf("CertFromPEM key %T does not match the 2048-bit RSA key returned", key)
	}
}
