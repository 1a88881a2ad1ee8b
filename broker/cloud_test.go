package broker_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// trusting is an HTTP client that trusts the certificates of the given
// fake Entra IDs, and nothing else.
func trusting(t *testing.T, idps ...*entratest.Server) *http.Client {
	t.Helper()
	roots := x509.NewCertPool()
	for _, idp := range idps {
		if !roots.AppendCertsFromPEM(idp.CertPEM()) {
			t.Fatal("cannot add the fake Entra ID's certificate")
		}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
}

// One broker serves a commercial app and a GCC High app at once: each
// app's tenants sign in at its own authority host, with its cloud's
// default scope, and a consent error names the app's own host. The
// commercial app uses the top-level authority_host, the GCC High app its
// own: two fake Entra IDs stand for login.microsoftonline.com and
// login.microsoftonline.us.
func TestCloudPerAppAtTheIdP(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1) // app partner, public cloud; tenant0 at w.IdP
	gov, err := entratest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gov.Close)
	const govClient, govSecret = "0a0a0a0a-0000-4000-8000-00000000b001", "gov-secret-Q~abcdefghijklmnopqrstuvwxyz0123"
	agency, bureau := brokertest.TenantID(50), brokertest.TenantID(51)
	gov.AddApp(govClient, govSecret)
	gov.AddTenant(entratest.Tenant{ID: agency, ConsentedApps: []string{govClient}})
	gov.AddTenant(entratest.Tenant{ID: bureau}) // no consent
	w.Apps = append(w.Apps, brokertest.App{Name: "gov", ClientID: govClient, Secret: govSecret,
		Extra: []string{`cloud = "usgovhigh"`, fmt.Sprintf("authority_host = %q", gov.URL())}})
	w.Configure("agency", agency, "gov")
	w.Configure("bureau", bureau, "gov")

	h := newHarnessWith(t, w, 0, broker.Options{HTTPClient: trusting(t, w.IdP, gov)})
	h.b.Start()
	h.advance(time.Second)

	for _, tc := range []struct {
		tenant, id string
		at, other  *entratest.Server
		aud        string
	}{
		{"tenant0", brokertest.TenantID(0), w.IdP, gov, "https://api.securitycenter.microsoft.com"},
		{"agency", agency, gov, w.IdP, "https://api-gov.securitycenter.microsoft.us"},
	} {
		tok, err := h.get(tc.tenant, 0)
		if err != nil {
			t.Fatalf("%s: %v", tc.tenant, err)
		}
		// The audience is the resource of the scope the IdP was asked for.
		c, err := entratest.Claims(tok.AccessToken)
		if err != nil || c["aud"] != tc.aud || c["tid"] != tc.id {
			t.Errorf("%s: claims %v (%v), want aud %s", tc.tenant, c, err, tc.aud)
		}
		if !slices.Contains(tc.at.Issued(), tok.AccessToken) {
			t.Errorf("%s: the token was not issued by its app's authority host %s", tc.tenant, tc.at.URL())
		}
		if n := tc.other.TokenRequests(tc.id); n != 0 {
			t.Errorf("%s: %d token requests reached the other app's authority host %s", tc.tenant, n, tc.other.URL())
		}
	}
	if n := gov.TokenRequests(bureau); n != 1 {
		t.Errorf("bureau: %d token requests at its app's authority host, want 1", n)
	}
	consent := gov.URL() + "/" + bureau + "/adminconsent?client_id=" + govClient
	wantState(t, h.status("bureau"), broker.StateFailed, "AADSTS700016", consent)
	_, err = h.get("bureau", 0)
	wantError(t, err, broker.KindFailedPrecondition, "AADSTS700016", consent)
}

// The top-level authority_host, when set, is every app's host, a
// non-public cloud's included; the cloud still chooses the scope.
func TestCloudScopeAtTopLevelAuthorityHost(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	w.Apps[0].Extra = []string{`cloud = "dod"`}
	h := newHarness(t, w, 0)
	tok, err := h.get("tenant0", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := entratest.Claims(tok.AccessToken); c["aud"] != "https://api-gov.securitycenter.microsoft.us" {
		t.Errorf("aud = %v, want the DoD Defender for Endpoint API", c["aud"])
	}
	if n := h.requests(0); n != 1 {
		t.Errorf("%d token requests at the top-level authority host, want 1", n)
	}
}
