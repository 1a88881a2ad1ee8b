package server

import (
	"github.com/tokenbroker/tokenbroker/broker"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

var kindToProto = map[string]brokerv1.CredentialKind{
	broker.CredentialSecret:        brokerv1.CredentialKind_CREDENTIAL_KIND_SECRET,
	broker.CredentialCertificate:   brokerv1.CredentialKind_CREDENTIAL_KIND_CERTIFICATE,
	broker.CredentialAssertionFile: brokerv1.CredentialKind_CREDENTIAL_KIND_ASSERTION_FILE,
}

// credentialInfo is c in the API's terms.
func credentialInfo(c broker.CredentialInfo) *brokerv1.CredentialInfo {
	return &brokerv1.CredentialInfo{
		App:              c.App,
		Kind:             kindToProto[c.Kind],
		Keystore:         c.Keystore,
		SetAt:            optionalTime(c.SetAt),
		ExpiresAt:        optionalTime(c.ExpiresAt),
		ThumbprintSha1:   c.ThumbprintSHA1,
		ThumbprintSha256: c.ThumbprintSHA256,
		Subject:          c.Subject,
		AssertionFile:    c.AssertionFile,
		SendX5C:          c.SendX5C,
	}
}

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
			as := &brokerv1.AppStatus{Name: a.Name, ClientId: a.ClientID, AuthorityHost: a.AuthorityHost, RequiredRoles: a.RequiredRoles}
			if admin {
				// What an app authenticates with, and how its keystore
				// fares, is the administrator's business; callers with a
				// tenant's tokens need not know.
				if a.Credential != nil {
					as.Credential = credentialInfo(*a.Credential)
				}
				as.CredentialError = a.CredentialError
			}
			out = append(out, as)
		}
	}
	return out
}
