package main_test

import (
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/testuser"
)

// consent-url and inspect through the real binaries, as root and as the
// second user nobody: nobody gets the consent link and the claims of the
// tenant it may use and of no other; a token lacking one of the app's
// required_roles makes inspect warn and exit 5, and brokerd log it once;
// no token shows anywhere.
func TestConsentURLAndInspect(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, "", map[string]string{"northwind": "allow_uids = [65534]"})
	w.Apps[0].Extra = []string{`required_roles = ["Alert.Read.All", "Machine.Read.All"]`}
	w.write(t)
	w.idp.AddTenant(entratest.Tenant{ID: w.tenants["woodgrove"], Domains: []string{"woodgrove.onmicrosoft.com"},
		ConsentedApps: []string{w.clientID}, Roles: []string{"Alert.Read.All"}})
	d := w.startShared(s)
	northwind, woodgrove := w.tenants["northwind"], w.tenants["woodgrove"]

	r := s.ctlAs(nobody, s.socket, "", "consent-url", "--tenant", "northwind")
	r.wantExit(t, 0)
	if want := w.idp.URL() + "/" + northwind + "/adminconsent?client_id=" + w.clientID + "\n"; r.stdout != want {
		t.Errorf("%v; want stdout %q", r, want)
	}
	s.ctlAs(nobody, s.socket, "", "consent-url", "--tenant", "woodgrove").
		wantExit(t, 3, `tenant "woodgrove" is not among the tenants brokerd lists for you`)

	r = s.ctlAs(nobody, s.socket, "", "inspect", "--tenant", "northwind")
	r.wantExit(t, 0)
	if !strings.Contains(r.stdout, "\ntid     "+northwind+"\n") || !strings.Contains(r.stdout, "\nroles   Alert.Read.All Machine.Read.All\n") {
		t.Errorf("%v; want northwind's tid and roles", r)
	}
	s.ctlAs(nobody, s.socket, "", "inspect", "--tenant", "woodgrove").wantExit(t, 4, "uid 65534", `"woodgrove"`)

	r = s.ctl("", "inspect", "--tenant", "woodgrove")
	if r.code != 5 || !strings.Contains(r.stdout, "\ntid     "+woodgrove+"\n") ||
		!strings.HasPrefix(r.stderr, "brokerctl: warning: the token lacks role Machine.Read.All that apps.partner.required_roles names") {
		t.Errorf("%v; want exit 5, the claims, and a warning naming Machine.Read.All", r)
	}
	d.waitLog(t, `msg="token lacks required roles" tenant=woodgrove app=partner missing_roles=[Machine.Read.All]`)
	if n := strings.Count(d.stderr.String(), `msg="token lacks required roles"`); n != 1 {
		t.Errorf("brokerd warned %d times about one token, want once", n)
	}
	s.checkNoLeaks([]string{w.secret}, w.idp.Issued())
}
