package broker_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// The credential tests run on a fake clock that starts at the real time:
// the fake Entra ID checks certificates and assertions against the real
// clock, the broker against its own.

// newCredHarness is newHarnessWith on a fake clock set to the real time.
func newCredHarness(t *testing.T, w *brokertest.World, opts broker.Options, top ...string) *harness {
	t.Helper()
	h := newHarnessWith(t, w, 0, opts, top...)
	h.clk.Set(time.Now())
	return h
}

// newCert makes a certificate valid from an hour before now until
// notAfter, and its PEM bundle.
func newCert(t *testing.T, now, notAfter time.Time) (*x509.Certificate, []byte) {
	t.Helper()
	cert, _, pemData, err := entratest.NewCertificate("tokenbroker test", now.Add(-time.Hour), notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return cert, pemData
}

// keyMaterial returns what of a PEM bundle must never be seen outside
// the keystore: the private key's base64 lines.
func keyMaterial(t *testing.T, pemData []byte) []string {
	t.Helper()
	var out []string
	for rest := pemData; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if strings.Contains(blk.Type, "PRIVATE KEY") {
			enc := base64.StdEncoding.EncodeToString(blk.Bytes)
			for i := 0; i+64 <= len(enc); i += 64 {
				out = append(out, enc[i:i+64])
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no private key in the bundle")
	}
	return out
}

// noLeak fails the test if any of secrets is in texts.
func noLeak(t *testing.T, where string, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contains secret material (%.12s...)", where, s)
		}
	}
}

// stored returns the credential the store holds for account, decoded,
// and whether it is in brokerd's own form.
func stored(t *testing.T, st keystore.Store, account string) (keystore.Credential, bool) {
	t.Helper()
	v, err := st.Get(context.Background(), account)
	if err != nil {
		t.Fatalf("reading the stored credential: %v", err)
	}
	c, err := keystore.Decode(v)
	if err != nil {
		t.Fatalf("decoding the stored credential: %v", err)
	}
	return c, strings.HasPrefix(v.Reveal(), `{"tokenbroker_credential":`)
}

func setCert(h *harness, app string, pemData []byte) (string, broker.CredentialInfo, error) {
	return h.b.SetCredential(context.Background(), broker.SetRequest{App: app, Kind: keystore.KindCertificate, Value: keystore.NewSecret(string(pemData))})
}

func lastAuth(t *testing.T, w *brokertest.World, tenant int) entratest.ClientAuth {
	t.Helper()
	auths := w.IdP.ClientAuths(brokertest.TenantID(tenant))
	if len(auths) == 0 {
		t.Fatalf("tenant%d: no granted token request", tenant)
	}
	return auths[len(auths)-1]
}

// A certificate replaces a secret: SetCredential verifies it with Entra
// ID, stores it in brokerd's form, and every tenant's tokens come from
// it, with the chain in the assertion when send_x5c is set; the secret
// can then be removed at Entra ID. Neither the key nor an assertion is
// ever in a log line.
func TestCertificateCredential(t *testing.T) {
	t.Parallel()
	for _, x5c := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "send_x5c"}[x5c], func(t *testing.T) {
			t.Parallel()
			w := brokertest.NewWorld(t, 2)
			if x5c {
				w.Apps[0].Extra = []string{"send_x5c = true"}
			}
			h := newCredHarness(t, w, broker.Options{})
			h.b.Start()
			h.advance(time.Second)
			if a := lastAuth(t, w, 1); a.Method != "secret" {
				t.Fatalf("before: method %q", a.Method)
			}
			cert, pemData := newCert(t, h.clk.Now(), h.clk.Now().Add(365*24*time.Hour))
			w.IdP.AddCertificate(w.ClientID, cert)

			verified, info, err := setCert(h, w.App, pemData)
			if err != nil {
				t.Fatal(err)
			}
			if verified != "tenant0" || info.Kind != broker.CredentialCertificate || info.ThumbprintSHA1 != entratest.Thumbprint(cert) ||
				!info.ExpiresAt.Equal(cert.NotAfter) || info.SendX5C != x5c || info.Subject != "CN=tokenbroker test" {
				t.Errorf("verified with %q, info %+v", verified, info)
			}
			c, envelope := stored(t, h.store, w.ClientID)
			if c.Kind != keystore.KindCertificate || !envelope || !c.SetAt.Equal(h.clk.Now().UTC().Truncate(time.Second)) {
				t.Errorf("stored: kind %q, brokerd's form %v, set at %v", c.Kind, envelope, c.SetAt)
			}
			if a := lastAuth(t, w, 0); a.Method != "certificate" || a.Thumbprint != entratest.Thumbprint(cert) || a.X5C != x5c {
				t.Errorf("verification: %+v", a)
			}

			w.IdP.RemoveSecret(w.ClientID)
			h.advance(time.Second) // every tenant is fetched again
			for i := range 2 {
				if a := lastAuth(t, w, i); a.Method != "certificate" || a.Thumbprint != entratest.Thumbprint(cert) || a.X5C != x5c {
					t.Errorf("tenant%d: %+v", i, a)
				}
			}
			h.advance(3 * time.Hour) // refreshes
			for _, st := range h.b.ListTenants() {
				wantState(t, st, broker.StateReady)
			}
			for i := range 2 {
				if a := lastAuth(t, w, i); a.Method != "certificate" {
					t.Errorf("tenant%d after refreshes: %+v", i, a)
				}
			}
			logs := h.logs.String()
			if !strings.Contains(logs, "thumbprint="+entratest.Thumbprint(cert)) {
				t.Errorf("the stored certificate is not named in the log:\n%s", logs)
			}
			noLeak(t, "the log", logs, keyMaterial(t, pemData)...)
			noLeak(t, "the log", logs, w.IdP.Assertions()...)
			noLeak(t, "the log", logs, "PRIVATE KEY")
		})
	}
}

// A certificate Entra ID does not know, an expired one and one too large
// for the keystore replace nothing; only the first is sent to Entra ID.
func TestCertificateRefused(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	st := &smallStore{Store: w.Store(t), max: 1 << 20}
	h := newCredHarness(t, w, broker.Options{Store: st})
	h.b.Start()
	h.settle()
	now := h.clk.Now()
	requests := func() int { return w.IdP.TotalTokenRequests() }

	_, pemData := newCert(t, now, now.Add(365*24*time.Hour))
	_, _, err := setCert(h, w.App, pemData)
	wantError(t, err, broker.KindFailedPrecondition, "AADSTS700027", "was not stored", "upload the certificate")
	noLeak(t, "the error", err.Error(), keyMaterial(t, pemData)...)
	if got := brokertest.StoredSecret(st, w.ClientID); got != w.Secret {
		t.Error("a certificate Entra ID refused replaced the stored secret")
	}

	before := requests()
	expired, pemData := newCert(t, now.Add(-48*time.Hour), now.Add(-time.Minute))
	w.IdP.AddCertificate(w.ClientID, expired)
	_, _, err = setCert(h, w.App, pemData)
	wantError(t, err, broker.KindInvalidArgument, "expired at", entratest.Thumbprint(expired))

	cert, pemData := newCert(t, now, now.Add(365*24*time.Hour))
	w.IdP.AddCertificate(w.ClientID, cert)
	st.max = 1024
	_, _, err = setCert(h, w.App, pemData)
	wantError(t, err, broker.KindInvalidArgument, "holds at most 1024", "without its chain")
	if got := requests(); got != before {
		t.Errorf("%d token requests for certificates refused before verification", got-before)
	}
	if got := brokertest.StoredSecret(st, w.ClientID); got != w.Secret {
		t.Error("a refused certificate replaced the stored secret")
	}
	h.advance(time.Second)
	if a := lastAuth(t, w, 0); a.Method != "secret" {
		t.Errorf("tokens come from %s after refused certificates", a.Method)
	}
	noLeak(t, "the log", h.logs.String(), keyMaterial(t, pemData)...)
}

// smallStore is a keystore that takes values of at most max bytes, as
// some OS keyrings do.
type smallStore struct {
	*brokertest.Store
	max int
}

func (s *smallStore) MaxSize() int { return s.max }

// verify_tenant names the tenant that must vouch for a new credential:
// by name, id or domain; a tenant of another app or none is refused
// before anything is sent, and a tenant that cannot vouch (no consent) is
// an error rather than skipped. no_verify stores without a request, and
// says so at warn level.
func TestVerifyTenant(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 2)
	w.AddTenant("unconsented", brokertest.TenantID(5), w.App, false)
	w.AddApp("other", "0b0b0b0b-0000-4000-8000-00000000b002", "other-secret-Q~0123456789")
	w.AddTenant("elsewhere", brokertest.TenantID(6), "other", true)
	h := newCredHarness(t, w, broker.Options{})
	set := func(secret, tenant string, noVerify bool) (string, error) {
		verified, _, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: w.App, Kind: keystore.KindSecret,
			Value: keystore.NewSecret(secret), VerifyTenant: tenant, NoVerify: noVerify})
		return verified, err
	}
	for _, name := range []string{"tenant1", brokertest.TenantID(1), "TENANT1.onmicrosoft.com"} {
		if got, err := set(w.Secret, name, false); err != nil || got != "tenant1" {
			t.Errorf("verify_tenant %s: verified with %q, %v", name, got, err)
		}
	}

	const rotated = "rotated-secret-Q~4444444444444444444444444"
	w.IdP.AddApp(w.ClientID, rotated)
	h.advance(time.Second) // the tenants fetched again after each change
	total := w.IdP.TotalTokenRequests()
	for _, name := range []string{"elsewhere", "nosuchtenant"} {
		_, err := set(rotated, name, false)
		wantError(t, err, broker.KindInvalidArgument, "is not a tenant of app partner", "tenant0, tenant1, unconsented")
	}
	_, err := set(rotated, "tenant0", true)
	wantError(t, err, broker.KindInvalidArgument, "exclude each other")
	if got := w.IdP.TotalTokenRequests(); got != total {
		t.Errorf("%d token requests for refused verify_tenant", got-total)
	}
	_, err = set(rotated, "unconsented", false)
	wantError(t, err, broker.KindFailedPrecondition, "verifying it with tenant unconsented failed", "was not stored")
	if got := brokertest.StoredSecret(h.store, w.ClientID); got != w.Secret {
		t.Error("a credential the named tenant did not vouch for was stored")
	}

	// With Entra ID refusing everything, only a credential nobody asked
	// Entra ID about can be stored. (Counting requests would race with the
	// re-acquisition the new credential starts.)
	w.IdP.SetFault("", &entratest.Fault{Status: http.StatusServiceUnavailable})
	if got, err := set(rotated, "", true); err != nil || got != "" {
		t.Fatalf("no_verify with Entra ID down: %q, %v", got, err)
	}
	w.IdP.SetFault("", nil)
	if got := brokertest.StoredSecret(h.store, w.ClientID); got != rotated {
		t.Error("no_verify did not store the secret")
	}
	if !strings.Contains(h.logs.String(), `level=WARN msg="credential stored WITHOUT verification (no_verify)" app=partner`) {
		t.Errorf("no warning for an unverified credential:\n%s", h.logs.String())
	}
	noLeak(t, "the log", h.logs.String(), rotated, w.Secret)
}

// A secret's expiry as its owner gives it is stored with it and shown; a
// past one, or one given for a certificate, is refused.
func TestSecretExpires(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	h := newCredHarness(t, w, broker.Options{})
	now := h.clk.Now()
	expires := now.Add(90 * 24 * time.Hour).Truncate(time.Second)
	_, info, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(w.Secret), Expires: expires})
	if err != nil {
		t.Fatal(err)
	}
	if !info.ExpiresAt.Equal(expires) {
		t.Errorf("expires %v, want %v", info.ExpiresAt, expires)
	}
	if c, envelope := stored(t, h.store, w.ClientID); !envelope || !c.Expires.Equal(expires) || c.Kind != keystore.KindSecret {
		t.Errorf("stored: %v %v %v", envelope, c.Kind, c.Expires)
	}
	got, err := h.b.GetCredential(context.Background(), w.App)
	if err != nil || !got.ExpiresAt.Equal(expires) || got.Kind != broker.CredentialSecret {
		t.Errorf("GetCredential: %+v, %v", got, err)
	}

	h.advance(time.Second) // tenant0 fetched with the new secret
	total := w.IdP.TotalTokenRequests()
	_, _, err = h.b.SetCredential(context.Background(), broker.SetRequest{App: w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(w.Secret), Expires: now.Add(-time.Hour)})
	wantError(t, err, broker.KindInvalidArgument, "is in the past")
	cert, pemData := newCert(t, now, now.Add(365*24*time.Hour))
	w.IdP.AddCertificate(w.ClientID, cert)
	_, _, err = h.b.SetCredential(context.Background(), broker.SetRequest{App: w.App, Kind: keystore.KindCertificate, Value: keystore.NewSecret(string(pemData)), Expires: expires})
	wantError(t, err, broker.KindInvalidArgument, "an expiry applies to a client secret")
	if got := w.IdP.TotalTokenRequests(); got != total {
		t.Errorf("%d token requests for refused credentials", got-total)
	}
}
