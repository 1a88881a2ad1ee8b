package broker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// A request over [limits], or one whose tenant or scopes could not be
// logged as they are, is INVALID_ARGUMENT naming the limit's key, without
// repeating the value, and reaches neither the tenant lookup nor Entra ID.
func TestGetTokenRequestLimits(t *testing.T) {
	w := brokertest.NewWorld(t, 1)
	b := w.NewBroker(t, broker.Options{}, "[limits]", "max_tenant_bytes = 64", "max_scopes = 2", "max_scope_bytes = 100")
	scope := broker.DefaultScope
	long := "https://" + strings.Repeat("v", 90) + ".example/.default"
	tests := []struct {
		name   string
		req    broker.TokenRequest
		msg    []string
		hidden string // must not appear in the message
	}{
		{"no tenant", broker.TokenRequest{}, []string{"no tenant given"}, ""},
		{"tenant too long", broker.TokenRequest{Tenant: strings.Repeat("t", 65)},
			[]string{"tenant name of 65 bytes", "limits.max_tenant_bytes (64)"}, strings.Repeat("t", 65)},
		{"tenant with a line break", broker.TokenRequest{Tenant: "tenant0\nlevel=ERROR msg=forged"},
			[]string{"not printable UTF-8 text"}, "forged"},
		{"tenant with a bidi override", broker.TokenRequest{Tenant: "tenant0\u202e"}, []string{"not printable UTF-8 text"}, "\u202e"},
		{"tenant not UTF-8", broker.TokenRequest{Tenant: "tenant0\xff"}, []string{"not printable UTF-8 text"}, "\xff"},
		{"too many scopes", broker.TokenRequest{Tenant: "tenant0", Scopes: []string{scope, scope, scope}},
			[]string{"3 scopes", "limits.max_scopes (2)"}, scope},
		{"scope too long", broker.TokenRequest{Tenant: "tenant0", Scopes: []string{scope, long}},
			[]string{"scope 2 of 115 bytes", "limits.max_scope_bytes (100)"}, long},
		{"scope with a control character", broker.TokenRequest{Tenant: "tenant0", Scopes: []string{"https://x.example/.default\x1b[2J"}},
			[]string{"scope 1 is not printable UTF-8 text"}, "x.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.GetToken(context.Background(), tt.req)
			wantError(t, err, broker.KindInvalidArgument, tt.msg...)
			if tt.hidden != "" && err != nil && strings.Contains(err.Error(), tt.hidden) {
				t.Errorf("the message repeats the value: %v", err)
			}
		})
	}
	if n := w.IdP.TotalTokenRequests(); n != 0 {
		t.Errorf("%d token requests for requests over the limits, want 0", n)
	}
	// At the limits themselves the request goes through.
	if _, err := b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant0", Scopes: []string{scope, scope}}); err != nil {
		t.Errorf("two scopes: %v", err)
	}
}

// An unknown tenant is allowed (and then NOT_FOUND) only for admins; any
// other caller is denied it as a tenant it may not use, even when the
// top-level list allows it. Every unknown name shares one key.
func TestAuthorizeUnknownTenant(t *testing.T) {
	w := brokertest.NewWorld(t, 1)
	b := w.NewBroker(t, broker.Options{}, "allow_uids = [65534]")
	nobody := broker.Caller{UID: 65534, GID: 65534}
	key, ok, why := b.Authorize(nobody, "TENANT0")
	if key != "tenant0" || !ok {
		t.Errorf("known tenant: %q, %v, %q", key, ok, why)
	}
	for _, name := range []string{"nosuch", "other.example"} {
		key, ok, why = b.Authorize(nobody, name)
		if key != "" || ok || !strings.Contains(why, "unknown tenant") {
			t.Errorf("nobody, %s: %q, %v, %q; want denied under the key \"\"", name, key, ok, why)
		}
		key, ok, why = b.Authorize(broker.Caller{UID: 0}, name)
		if key != "" || !ok || why != "unknown tenant; root" {
			t.Errorf("root, %s: %q, %v, %q; want allowed under the key \"\"", name, key, ok, why)
		}
	}
}
