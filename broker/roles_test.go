package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// A token of the app's scopes without every role of required_roles is
// logged as a warning once as it lands, naming the tenant and the missing
// roles, never the token; cache hits, tokens of other scopes and tokens
// with every role add no warning, and each refresh that brings a token
// still lacking them warns again.
func TestRequiredRolesWarnedOncePerToken(t *testing.T) {
	w := brokertest.NewWorld(t, 2)
	w.Apps[0].Extra = []string{
		`required_roles = ["Machine.Isolate", "Alert.Read.All"]`,
		`allowed_scopes = ["https://graph.microsoft.com"]`,
	}
	w.IdP.AddTenant(entratest.Tenant{ID: brokertest.TenantID(1), Domains: []string{"tenant1.onmicrosoft.com"},
		ConsentedApps: []string{w.ClientID}, Roles: []string{"Alert.Read.All", "Machine.Isolate", "Machine.Read.All"}})
	h := newHarness(t, w, 0)
	h.b.Start()
	h.settle()

	warnings := func() []string {
		var out []string
		for _, line := range strings.Split(h.logs.String(), "\n") {
			if strings.Contains(line, `msg="token lacks required roles"`) {
				out = append(out, line)
			}
		}
		return out
	}
	got := warnings()
	if len(got) != 1 || !strings.Contains(got[0], "tenant=tenant0") || !strings.Contains(got[0], "missing_roles=[Machine.Isolate]") ||
		!strings.Contains(got[0], "/"+brokertest.TenantID(0)+"/adminconsent?client_id="+w.ClientID) {
		t.Fatalf("warnings after the first tokens:\n%s\nwant one for tenant0 naming Machine.Isolate and the consent URL", strings.Join(got, "\n"))
	}

	for range 3 {
		if _, err := h.get("tenant0", 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.getScopes("tenant0", 0, "https://graph.microsoft.com/.default"); err != nil {
		t.Fatal(err)
	}
	if n := len(warnings()); n != 1 {
		t.Errorf("%d warnings after cache hits and a token of another scope, want still 1", n)
	}

	h.advance(2 * time.Hour) // past two refreshes of 1-hour tokens
	lacking := 0             // tenant0's tokens for the app's scope
	for _, tok := range w.IdP.Issued() {
		c, err := entratest.Claims(tok)
		if err == nil && c["tid"] == brokertest.TenantID(0) && c["aud"] == "https://api.securitycenter.microsoft.com" {
			lacking++
		}
	}
	if n := len(warnings()); lacking < 3 || n != lacking {
		t.Errorf("%d warnings for %d tokens of the app's scope lacking a role, want one for each (at least 3)", n, lacking)
	}
	for _, tok := range w.IdP.Issued() {
		if strings.Contains(h.logs.String(), tok) {
			t.Fatal("a token is in the log")
		}
	}
}
