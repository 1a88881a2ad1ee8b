package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// A credential that expires within 30 days is warned of when it is set,
// and again at most once a day while tokens are refreshed; one that
// expires later is not.
func TestExpiryWarnings(t *testing.T) {
	t.Parallel()
	const warning = `level=WARN msg="credential expires soon" app=partner`
	for _, tc := range []struct {
		name  string
		left  time.Duration
		cert  bool
		warns bool
	}{
		{"secret in 20 days", 20 * 24 * time.Hour, false, true},
		{"certificate in 10 days", 10 * 24 * time.Hour, true, true},
		{"secret in 60 days", 60 * 24 * time.Hour, false, false},
		{"certificate in 60 days", 60 * 24 * time.Hour, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := brokertest.NewWorld(t, 1)
			w.IdP.SetLifetime(4 * time.Hour) // fewer refreshes to run through
			h := newCredHarness(t, w, broker.Options{})
			h.b.Start()
			h.settle()
			now := h.clk.Now()
			req := broker.SetRequest{App: w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(w.Secret), Expires: now.Add(tc.left)}
			if tc.cert {
				cert, pemData := newCert(t, now, now.Add(tc.left))
				w.IdP.AddCertificate(w.ClientID, cert)
				req = broker.SetRequest{App: w.App, Kind: keystore.KindCertificate, Value: keystore.NewSecret(string(pemData))}
			}
			if _, _, err := h.b.SetCredential(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			// Refresh after refresh for 56 hours, the clock jumping from
			// one to the next; warnedAt is when each warning came.
			count := func() int { return strings.Count(h.logs.String(), warning) }
			var warnedAt []time.Duration
			if n := count(); n > 1 {
				t.Errorf("%d warnings when the credential was set", n)
			} else if n == 1 {
				warnedAt = append(warnedAt, 0)
			}
			for h.clk.Now().Sub(now) < 56*time.Hour {
				next, sent := h.status("tenant0").NextRefresh, w.IdP.TotalTokenRequests()
				h.clk.Set(next)
				h.nudge("the refresh", func() bool {
					st := h.status("tenant0")
					return w.IdP.TotalTokenRequests() > sent && st.State == broker.StateReady && st.NextRefresh.After(next)
				})
				h.settle()
				switch n := count(); {
				case n > len(warnedAt)+1:
					t.Fatalf("%d warnings at one refresh", n-len(warnedAt))
				case n > len(warnedAt):
					warnedAt = append(warnedAt, h.clk.Now().Sub(now))
				}
			}
			if !tc.warns {
				if len(warnedAt) != 0 {
					t.Errorf("warnings at %v for a credential that expires in %v", warnedAt, tc.left)
				}
				return
			}
			if len(warnedAt) == 0 || warnedAt[0] != 0 {
				t.Errorf("warnings at %v, want one when the credential was set", warnedAt)
			}
			for i := 1; i < len(warnedAt); i++ {
				if warnedAt[i]-warnedAt[i-1] < 24*time.Hour {
					t.Errorf("warnings at %v: more than one a day", warnedAt)
				}
			}
			if len(warnedAt) < 3 {
				t.Errorf("warnings at %v in 56 hours of refreshes every few hours, want one a day", warnedAt)
			}
			if !strings.Contains(h.logs.String(), "brokerctl credential set --app partner") {
				t.Error("the warning does not say what to do")
			}
		})
	}
}
