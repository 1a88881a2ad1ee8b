package server

import (
	"slices"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// ListTenants tells a caller about the apps of the tenants it may use, and
// brokerd's uid and root about every app, those with no tenant included.
func TestAppsFor(t *testing.T) {
	w := brokertest.NewWorld(t, 1)
	w.Apps[0].Extra = []string{`required_roles = ["Alert.Read.All"]`}
	w.AddApp("second", "0a0a0a0a-0000-4000-8000-00000000a002", "second-secret")
	w.AddApp("unused", "0a0a0a0a-0000-4000-8000-00000000a003", "unused-secret")
	w.AddTenant("other", brokertest.TenantID(1), "second", true)
	b := w.NewBroker(t, broker.Options{})

	names := func(apps []*brokerv1.AppStatus) []string {
		var out []string
		for _, a := range apps {
			out = append(out, a.GetName())
		}
		return out
	}
	listed := []*brokerv1.TenantStatus{{Name: "tenant0", App: "partner"}}
	if got := names(appsFor(b, broker.Caller{UID: 65534}, listed)); !slices.Equal(got, []string{"partner"}) {
		t.Errorf("another user's apps = %v, want only partner, its tenant's", got)
	}
	if got := appsFor(b, broker.Caller{UID: 65534}, nil); got != nil {
		t.Errorf("apps of a user with no tenant = %v, want none", names(got))
	}
	all := appsFor(b, broker.Caller{UID: 0}, listed)
	if got := names(all); !slices.Equal(got, []string{"partner", "second", "unused"}) {
		t.Errorf("root's apps = %v, want every app", got)
	}
	p := all[0]
	if p.GetClientId() != w.ClientID || p.GetAuthorityHost() != w.IdP.URL() || !slices.Equal(p.GetRequiredRoles(), []string{"Alert.Read.All"}) {
		t.Errorf("partner = %v", p)
	}
}
