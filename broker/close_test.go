package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// After Close returns, no goroutine of the broker is left and no request
// reaches Entra ID, even with a refresh held at the IdP and a caller
// waiting for it when Close comes. Close does not wait for the IdP.
//
// Not parallel: goleak looks at every goroutine of the process, and
// parallel tests run only after the sequential ones, so none runs beside
// this one.
func TestCloseLeavesNothingRunning(t *testing.T) {
	before := goleak.IgnoreCurrent()
	w := brokertest.NewWorld(t, 3)
	w.IdP.SetLifetime(time.Minute)
	h := newHarness(t, w, 0, `min_valid = "10s"`)
	h.b.Start()
	h.advance(time.Second)

	w.IdP.SetFault(brokertest.TenantID(0), &entratest.Fault{Delay: time.Minute})
	h.clk.Set(h.status("tenant0").NextRefresh)
	h.nudge("tenant0's refresh to reach the IdP", func() bool { return h.requests(0) == 2 })
	// The cached token has less than the caller's 30 s left: it waits
	// for the refresh.
	h.clk.Set(h.status("tenant0").ExpiresAt.Add(-20 * time.Second))
	waiter := make(chan error, 1)
	go func() {
		_, err := h.get("tenant0", 30*time.Second)
		waiter <- err
	}()
	brokertest.WaitFor(t, "the caller to wait", func() bool { return h.status("tenant0").CacheMisses == 1 })

	closed := make(chan struct{})
	go func() { h.b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the IdP")
	}
	if left := brokertest.Goroutines("github.com/tokenbroker/tokenbroker/broker"); len(left) > 0 {
		t.Errorf("%d goroutines of the broker outlived Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	wantError(t, <-waiter, broker.KindUnavailable, "shutting down")

	requests := w.IdP.TotalTokenRequests()
	h.clk.Advance(24 * time.Hour)
	time.Sleep(200 * time.Millisecond)
	if got := w.IdP.TotalTokenRequests(); got != requests {
		t.Errorf("%d token requests reached the IdP after Close", got-requests)
	}
	_, err := h.get("tenant1", 0)
	wantError(t, err, broker.KindUnavailable, "shutting down")
	_, _, err = h.b.SetCredential(context.Background(), broker.SetRequest{App: w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(w.Secret)})
	wantError(t, err, broker.KindUnavailable, "shutting down")
	h.b.Close() // a second Close is harmless

	w.IdP.Close() // the fake Entra ID's own goroutines are not the broker's
	goleak.VerifyNone(t, before)
}
