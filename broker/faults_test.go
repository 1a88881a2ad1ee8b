package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// The fault matrix, on the fake clock: from a tenant's first refresh on,
// every answer is one kind of fault. The cached token is served while it
// has min_valid left (DEGRADED, with the cause and the next attempt), then
// callers get UNAVAILABLE naming the cause (FAILED); attempts follow the
// backoff (or the IdP's Retry-After), never the callers.
func TestFaultMatrix(t *testing.T) {
	t.Parallel()
	untrusted, err := entratest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(untrusted.Close)
	tests := []struct {
		name   string
		inject func(w *brokertest.World, p *brokertest.Proxy)
		msg    string
		// attempts is how many token requests the broker makes in the 20
		// minutes after the first failed refresh: backoff from 0.5-1 s
		// doubling to 5 minutes gives 12 to 16; a Retry-After of 10
		// minutes, 3.
		minAttempts, maxAttempts int
	}{
		{"connection refused", func(w *brokertest.World, p *brokertest.Proxy) { p.Refuse() }, "connection refused", 12, 16},
		{"slower than idp_timeout", func(w *brokertest.World, p *brokertest.Proxy) {
			w.IdP.SetFault("", &entratest.Fault{Delay: time.Minute})
		}, "did not answer within the token request timeout (idp_timeout)", 12, 16},
		{"500", func(w *brokertest.World, p *brokertest.Proxy) { w.IdP.SetFault("", &entratest.Fault{Status: 500}) }, "(HTTP 500)", 12, 16},
		{"503 with Retry-After", func(w *brokertest.World, p *brokertest.Proxy) {
			w.IdP.SetFault("", &entratest.Fault{Status: 503, RetryAfter: "600"})
		}, "AADSTS90033", 3, 3},
		{"429 with a Retry-After date", func(w *brokertest.World, p *brokertest.Proxy) {
			at := time.Now().Add(10 * time.Minute).UTC().Format(time.RFC1123)
			w.IdP.SetFault("", &entratest.Fault{Status: 429, RetryAfter: at[:len(at)-3] + "GMT"})
		}, "throttling", 3, 3},
		{"malformed body", func(w *brokertest.World, p *brokertest.Proxy) {
			w.IdP.SetFault("", &entratest.Fault{Status: 200, Body: `{"access_token": "x", "expires_in": `})
		}, "unusable token response", 12, 16},
		{"wrong tid", func(w *brokertest.World, p *brokertest.Proxy) {
			w.IdP.SetFault("", &entratest.Fault{WrongTenantID: brokertest.TenantID(77)})
		}, brokertest.TenantID(77), 12, 16},
		{"TLS certificate not trusted", func(w *brokertest.World, p *brokertest.Proxy) { p.Swap(t, untrusted.URL()) }, "not trusted", 12, 16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := brokertest.NewWorld(t, 1)
			p := brokertest.NewProxy(t, w.IdP.URL())
			w.Authority = p.URL()
			timeout := "30s"
			if tt.name == "slower than idp_timeout" {
				timeout = "300ms"
			}
			h := newHarness(t, w, 0, `idp_timeout = "`+timeout+`"`)
			h.b.Start()
			h.settle()
			first, err := h.get("tenant0", 0)
			if err != nil {
				t.Fatal(err)
			}
			tt.inject(w, p)
			refresh := h.status("tenant0").NextRefresh
			before := h.status("tenant0").IdPRequests

			h.runUntil(refresh)
			st := h.status("tenant0")
			wantState(t, st, broker.StateDegraded, tt.msg)
			if !st.NextRefresh.After(h.clk.Now()) {
				t.Errorf("degraded without a next attempt: %v", st.NextRefresh)
			}
			if tok, err := h.get("tenant0", 0); err != nil || tok.AccessToken != first.AccessToken {
				t.Errorf("the cached token is not served while degraded: %v", err)
			}
			h.runUntil(refresh.Add(20 * time.Minute))
			st = h.status("tenant0")
			wantState(t, st, broker.StateFailed, tt.msg)
			_, err = h.get("tenant0", 0)
			wantError(t, err, broker.KindUnavailable, tt.msg, "next attempt at")
			attempts := int(h.status("tenant0").IdPRequests - before)
			if attempts < tt.minAttempts || attempts > tt.maxAttempts {
				t.Errorf("%d attempts in 20 minutes of faults, want %d to %d", attempts, tt.minAttempts, tt.maxAttempts)
			}
			for _, tok := range w.IdP.Issued() {
				if contains(h.logs.String(), tok) || contains(st.LastError, tok) {
					t.Error("a token leaked into the logs or the status")
				}
			}
		})
	}
}

func contains(s, sub string) bool { return len(sub) > 0 && strings.Contains(s, sub) }
