package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// consent-url prints the admin consent link of a configured tenant (the very
// link brokerd's consent errors name), of a tenant not configured yet, and
// the common link; mistakes get one line saying what to give instead.
func TestConsentURL(t *testing.T) {
	w := brokertest.NewWorld(t, 1)
	w.AddTenant("pending", brokertest.TenantID(1), w.App, false)                       // not consented
	fresh := w.AddApp("fresh", "0a0a0a0a-0000-4000-8000-00000000f001", "fresh-secret") // no tenant yet
	sock := serveWorld(t, w)
	host := w.IdP.URL()

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"configured tenant by name", []string{"--tenant", "tenant0"},
			host + "/" + brokertest.TenantID(0) + "/adminconsent?client_id=" + w.ClientID},
		{"configured tenant by id", []string{"--tenant", strings.ToUpper(brokertest.TenantID(1))},
			host + "/" + brokertest.TenantID(1) + "/adminconsent?client_id=" + w.ClientID},
		{"common link", []string{"--app", "partner"},
			host + "/common/adminconsent?client_id=" + w.ClientID},
		{"new tenant by domain, app without tenants", []string{"--app", "fresh", "--tenant-id", "Fabrikam.onmicrosoft.com"},
			host + "/fabrikam.onmicrosoft.com/adminconsent?client_id=" + fresh.ClientID},
	}
	for _, tt := range tests {
		r := runCLI(t, "", append([]string{"--socket", sock, "consent-url"}, tt.args...)...)
		if r.code != exitOK || r.stdout != tt.want+"\n" || r.stderr != "" {
			t.Errorf("%s: %+v, want exactly %s", tt.name, r, tt.want)
		}
	}

	// The link is the one brokerd gives with a consent error.
	c, err := client.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = c.GetToken(ctx, "pending", nil, 0)
	link := runCLI(t, "", "--socket", sock, "consent-url", "--tenant", "pending").stdout
	if err == nil || !strings.Contains(err.Error(), "AADSTS") || !strings.Contains(err.Error(), strings.TrimSpace(link)) {
		t.Errorf("brokerd's consent error %v does not name consent-url's link %q", err, link)
	}

	const seeHelp = " (see brokerctl consent-url --help)"
	mistakes := []struct {
		name string
		args []string
		code int
		want string // stderr, one line without its newline
	}{
		{"unknown tenant", []string{"--tenant", "nosuch"}, exitNotFound,
			`brokerctl: NotFound: tenant "nosuch" is not among the tenants brokerd lists for you (give its configured name or tenant id, see ` + "`brokerctl tenants`" + `; for a tenant not configured yet, use --app and --tenant-id)`},
		{"unknown app", []string{"--app", "nosuch"}, exitNotFound,
			`brokerctl: NotFound: app "nosuch" is not among the apps brokerd lists for you (fresh, partner)`},
		{"several apps, none named", nil, exitUsage,
			"brokerctl: brokerd has several apps (fresh, partner): name one with --app" + seeHelp},
		{"bad tenant id", []string{"--app", "partner", "--tenant-id", "../x"}, exitUsage,
			`brokerctl: invalid --tenant-id "../x": give the tenant's id (a GUID) or one of its domains, e.g. contoso.onmicrosoft.com` + seeHelp},
		{"tenant and app", []string{"--tenant", "tenant0", "--app", "partner"}, exitUsage,
			"brokerctl: if any flags in the group [tenant app] are set none of the others can be; [app tenant] were all set" + seeHelp},
	}
	for _, tt := range mistakes {
		r := runCLI(t, "", append([]string{"--socket", sock, "consent-url"}, tt.args...)...)
		if r.code != tt.code || r.stderr != tt.want+"\n" || r.stdout != "" {
			t.Errorf("%s: %+v, want exit %d and %q", tt.name, r, tt.code, tt.want)
		}
	}
}
