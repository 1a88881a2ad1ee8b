package server

import (
	"github.com/tokenbroker/tokenbroker/broker"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// appsFor are the apps ListTenants reports to caller along with tenants,
// the tenants it may use: their apps, and for brokerd's own uid and root
// every app, those without tenants included.
func appsFor(b *broker.Broker, caller broker.Caller, tenants []*brokerv1.TenantStatus) []*brokerv1.AppStatus {
	used := make(map[string]bool, len(tenants))
	for _, t := range tenants {
		used[t.GetApp()] = true
	}
	admin := broker.IsAdmin(caller)
	var out []*brokerv1.AppStatus
	for _, a := range b.Apps() {
		if admin || used[a.Name] {
			out = append(out, &brokerv1.AppStatus{Name: a.Name, ClientId: a.ClientID, AuthorityHost: a.AuthorityHost, RequiredRoles: a.RequiredRoles})
		}
	}
	return out
}
