package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeclock"
)

// The lifecycle tests run the real broker, real MSAL and the TLS fake
// Entra ID on a fake clock: refreshes, retries and states that take hours
// of token life happen in milliseconds. After moving the clock a test
// settles the broker (nothing in flight, the scheduler asleep until a
// moment the clock has not reached), so what it asserts is exact.

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type harness struct {
	t     *testing.T
	w     *brokertest.World
	clk   *fakeclock.Clock
	store *brokertest.Store
	b     *broker.Broker
	logs  *brokertest.LogBuffer
}

// newHarness builds a broker on a fake clock over w (a new World with the
// given number of tenants when w is nil), with the top-level config lines
// in top. The broker is not started. Its keystore calls time out after
// half a second of real time.
func newHarness(t *testing.T, w *brokertest.World, tenants int, top ...string) *harness {
	t.Helper()
	return newHarnessWith(t, w, tenants, broker.Options{}, top...)
}

// newHarnessWith is newHarness with options: a Store or KeystoreTimeout
// set in opts is used.
func newHarnessWith(t *testing.T, w *brokertest.World, tenants int, opts broker.Options, top ...string) *harness {
	t.Helper()
	if w == nil {
		w = brokertest.NewWorld(t, tenants)
	}
	h := &harness{t: t, w: w, clk: fakeclock.New(t0), store: w.Store(t), logs: &brokertest.LogBuffer{}}
	if opts.Store == nil {
		opts.Store = h.store
	}
	if opts.KeystoreTimeout == 0 {
		opts.KeystoreTimeout = 500 * time.Millisecond
	}
	opts.Clock, opts.Logger = h.clk, brokertest.DebugLogger(h.logs)
	h.b = w.NewBroker(t, opts, top...)
	return h
}

// settle waits until the broker is quiet and returns when its scheduler
// wakes next.
func (h *harness) settle() time.Time {
	h.t.Helper()
	return broker.Settle(h.t, h.b)
}

// runUntil moves the clock to target through every moment the scheduler
// wakes on the way, as real time would, settling the broker at each. A
// target in the past only settles the broker.
func (h *harness) runUntil(target time.Time) {
	h.t.Helper()
	if target.Before(h.clk.Now()) {
		target = h.clk.Now()
	}
	for {
		next := h.settle()
		if next.IsZero() || next.After(target) {
			break
		}
		h.clk.Set(next)
	}
	h.clk.Set(target)
	h.settle()
}

func (h *harness) advance(d time.Duration) { h.t.Helper(); h.runUntil(h.clk.Now().Add(d)) }

// nudge waits for cond with something in flight (so the broker cannot
// settle), moving the clock one pacing slot (20 ms) at a time.
func (h *harness) nudge(what string, cond func() bool) {
	h.t.Helper()
	brokertest.WaitFor(h.t, what, func() bool {
		h.clk.Advance(20 * time.Millisecond)
		return cond()
	})
}

func (h *harness) status(name string) broker.TenantStatus {
	h.t.Helper()
	for _, s := range h.b.ListTenants() {
		if s.Name == name {
			return s
		}
	}
	h.t.Fatalf("no tenant %s", name)
	return broker.TenantStatus{}
}

func (h *harness) get(name string, minValid time.Duration) (*broker.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.b.GetToken(ctx, broker.TokenRequest{Tenant: name, MinValid: minValid})
}

// requests is how many token requests tenant i's id has received.
func (h *harness) requests(i int) int { return h.w.IdP.TokenRequests(brokertest.TenantID(i)) }

func wantState(t *testing.T, s broker.TenantStatus, want broker.State, msgs ...string) {
	t.Helper()
	if s.State != want {
		t.Errorf("%s: state %v, want %v (last error %q)", s.Name, s.State, want, s.LastError)
	}
	for _, m := range msgs {
		if !strings.Contains(s.LastError, m) {
			t.Errorf("%s: last error %q does not contain %q", s.Name, s.LastError, m)
		}
	}
}

func between(t *testing.T, what string, got, lo, hi time.Duration) {
	t.Helper()
	if got < lo || got > hi {
		t.Errorf("%s = %v, want between %v and %v", what, got, lo, hi)
	}
}

// Entra ID's hour-long tokens are refreshed 15 to 21 minutes before they
// expire (refresh_before, plus up to a tenth of the lifetime of jitter),
// exactly once per token, and callers never see a token with less than
// min_valid left.
func TestRefreshSchedule(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 1)
	h.b.Start()
	h.settle()
	st := h.status("tenant0")
	wantState(t, st, broker.StateReady)
	between(t, "first token's lifetime", st.ExpiresAt.Sub(t0), 3599*time.Second, time.Hour)
	first, err := h.get("tenant0", 0)
	if err != nil {
		t.Fatal(err)
	}
	for cycle := 1; cycle <= 5; cycle++ {
		st := h.status("tenant0")
		between(t, "refresh lead before expiry", st.ExpiresAt.Sub(st.NextRefresh), 15*time.Minute, 21*time.Minute)
		h.runUntil(st.NextRefresh.Add(-time.Millisecond))
		if got := h.requests(0); got != cycle {
			t.Fatalf("cycle %d: %d token requests before the refresh time, want %d", cycle, got, cycle)
		}
		tok, err := h.get("tenant0", 0)
		if err != nil || tok.ExpiresAt.Sub(h.clk.Now()) < broker.DefaultMinValid {
			t.Fatalf("cycle %d: before the refresh: %v, %v", cycle, tok, err)
		}
		h.runUntil(st.NextRefresh)
		if got := h.requests(0); got != cycle+1 {
			t.Fatalf("cycle %d: %d token requests at the refresh time, want %d", cycle, got, cycle+1)
		}
		tok, err = h.get("tenant0", 0)
		if err != nil || tok.AccessToken == first.AccessToken || !tok.IssuedAt.Equal(st.NextRefresh) {
			t.Fatalf("cycle %d: after the refresh: %v, %v", cycle, tok, err)
		}
		first = tok
	}
	if st := h.status("tenant0"); st.CacheMisses != 0 || st.CacheHits != 10+1 {
		t.Errorf("hits %d, misses %d: every call should have been served from the cache", st.CacheHits, st.CacheMisses)
	}
}

// Short tokens are refreshed at half their life less jitter, and an IdP's
// refresh_in moves the refresh earlier.
func TestShortTokensAndRefreshIn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 2, `min_valid = "10s"`)
	h.w.IdP.SetLifetime(time.Minute)
	h.b.Start()
	h.advance(time.Second)
	for range 40 {
		st := h.status("tenant0")
		between(t, "refresh after issue", st.NextRefresh.Sub(st.ExpiresAt.Add(-time.Minute)), 23*time.Second, 31*time.Second)
		// Both tenants' refreshes may fall due together: one waits for
		// the next pacing slot, 20 ms on.
		h.runUntil(st.NextRefresh.Add(20 * time.Millisecond))
		tok, err := h.get("tenant1", 0)
		if err != nil || tok.ExpiresAt.Sub(h.clk.Now()) < 10*time.Second {
			t.Fatalf("tenant1: %v, %v", tok, err)
		}
	}
	if got := h.requests(0); got != 41 {
		t.Errorf("tenant0: %d token requests for 40 refreshes, want 41", got)
	}
	if st := h.status("tenant1"); st.CacheMisses != 0 {
		t.Errorf("tenant1: %d calls found no fresh token", st.CacheMisses)
	}

	h.w.IdP.SetLifetime(time.Hour)
	h.w.IdP.SetRefreshIn(10 * time.Minute)
	h.runUntil(h.status("tenant0").NextRefresh.Add(20 * time.Millisecond))
	tok, err := h.get("tenant0", 0)
	if err != nil {
		t.Fatal(err)
	}
	between(t, "refresh after issue with refresh_in 10m", h.status("tenant0").NextRefresh.Sub(tok.IssuedAt), 10*time.Minute-time.Second, 10*time.Minute)
}

// A transient fault during a refresh: the cached token is served while it
// has min_valid left (DEGRADED), then callers get UNAVAILABLE with the
// cause and the next attempt (FAILED). Attempts back off exponentially,
// with jitter, to five minutes; the first success brings the tenant back
// and resets the backoff.
func TestTransientFailureBacksOff(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 1)
	h.b.Start()
	h.settle()
	first, _ := h.get("tenant0", 0)
	h.w.IdP.SetFault("", &entratest.Fault{Status: 500})

	last := h.status("tenant0").NextRefresh
	attempts, degraded, failed := 0, 0, 0
	for failed < 3 {
		attempts++
		if attempts > 40 {
			t.Fatalf("after %d attempts: %d degraded, %d failed", attempts, degraded, failed)
		}
		h.runUntil(last)
		st := h.status("tenant0")
		if got := h.requests(0); got != attempts+1 {
			t.Fatalf("attempt %d: %d token requests, want %d", attempts, got, attempts+1)
		}
		step := min(time.Second<<(attempts-1), 5*time.Minute)
		between(t, "retry wait", st.NextRefresh.Sub(last), step/2, step)
		if left := first.ExpiresAt.Sub(h.clk.Now()); left >= broker.DefaultMinValid {
			degraded++
			wantState(t, st, broker.StateDegraded, "(HTTP 500)")
			if tok, err := h.get("tenant0", 0); err != nil || tok.AccessToken != first.AccessToken {
				t.Fatalf("while degraded: %v, %v", tok, err)
			}
		} else {
			failed++
			wantState(t, st, broker.StateFailed, "(HTTP 500)")
			_, err := h.get("tenant0", 0)
			wantError(t, err, broker.KindUnavailable, "(HTTP 500)", "next attempt at "+st.NextRefresh.Format(time.RFC3339))
		}
		last = st.NextRefresh
	}
	if degraded < 5 {
		t.Errorf("degraded for only %d attempts while the cached token had min_valid left", degraded)
	}
	if got := h.requests(0); got != attempts+1 {
		t.Errorf("callers reached the IdP: %d token requests, want %d", got, attempts+1)
	}

	h.w.IdP.SetFault("", nil)
	h.runUntil(last)
	wantState(t, h.status("tenant0"), broker.StateReady)
	h.w.IdP.SetFault("", &entratest.Fault{Status: 503, Times: 1})
	h.runUntil(h.status("tenant0").NextRefresh)
	st := h.status("tenant0")
	wantState(t, st, broker.StateDegraded, "AADSTS90033")
	between(t, "first retry after a success", st.NextRefresh.Sub(h.clk.Now()), 500*time.Millisecond, time.Second)
	h.runUntil(st.NextRefresh)
	wantState(t, h.status("tenant0"), broker.StateReady)
}

// Entra ID's Retry-After is honoured when it is longer than the backoff.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 1)
	h.b.Start()
	h.settle()
	h.w.IdP.SetFault("", &entratest.Fault{Status: 429, RetryAfter: "120"})
	h.runUntil(h.status("tenant0").NextRefresh)
	st := h.status("tenant0")
	wantState(t, st, broker.StateDegraded, "throttling")
	between(t, "retry after a 429 with Retry-After 120", st.NextRefresh.Sub(h.clk.Now()), 120*time.Second, 120*time.Second)
	h.runUntil(st.NextRefresh.Add(-time.Millisecond))
	if got := h.requests(0); got != 2 {
		t.Errorf("%d token requests before Retry-After passed, want 2", got)
	}
}

// A permanent error (consent revoked) is retried only every ten minutes;
// the tenant shows the reason and the consent URL, and other tenants are
// unaffected.
func TestPermanentFailureRetriedSlowly(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 2)
	h.b.Start()
	h.advance(time.Second)
	h.w.IdP.SetConsent(brokertest.TenantID(0), h.w.ClientID, false)
	consent := h.w.IdP.URL() + "/" + brokertest.TenantID(0) + "/adminconsent?client_id=" + h.w.ClientID

	// tenant1's refresh may hold tenant0's for one pacing slot (20 ms).
	refresh := h.status("tenant0").NextRefresh
	h.runUntil(refresh.Add(20 * time.Millisecond))
	st := h.status("tenant0")
	wantState(t, st, broker.StateDegraded, "AADSTS700016", consent)
	between(t, "retry after a permanent error", st.NextRefresh.Sub(refresh), 10*time.Minute, 10*time.Minute+20*time.Millisecond)

	h.advance(2 * time.Hour)
	st = h.status("tenant0")
	wantState(t, st, broker.StateFailed, "AADSTS700016", consent)
	_, err := h.get("tenant0", 0)
	wantError(t, err, broker.KindFailedPrecondition, "AADSTS700016", consent)
	// One failed refresh, then one attempt per ten minutes.
	if got := h.requests(0); got < 1+1+12 || got > 1+1+13 {
		t.Errorf("tenant0: %d token requests in two hours of a permanent error", got)
	}
	wantState(t, h.status("tenant1"), broker.StateReady)
	if got := h.requests(1); got < 3 {
		t.Errorf("tenant1 was not refreshed while tenant0 failed: %d token requests", got)
	}

	h.w.IdP.SetConsent(brokertest.TenantID(0), h.w.ClientID, true)
	h.runUntil(h.status("tenant0").NextRefresh.Add(20 * time.Millisecond))
	wantState(t, h.status("tenant0"), broker.StateReady)
}

// Every acquisition that falls due, however many fall due at once (after
// the process was stopped or the host slept), is paced by prefetch_rate;
// a caller who needs a token meanwhile gets one at once.
func TestCatchUpIsPaced(t *testing.T) {
	t.Parallel()
	const tenants = 20
	h := newHarness(t, nil, tenants) // prefetch_rate 50: one every 20 ms
	h.b.Start()
	h.settle()
	if got := h.w.IdP.TotalTokenRequests(); got != 1 {
		t.Fatalf("%d token requests at start, before the clock moved; want 1 (paced)", got)
	}
	h.advance(time.Second)
	if got := h.w.IdP.TotalTokenRequests(); got != tenants {
		t.Fatalf("%d token requests after a second, want %d", got, tenants)
	}

	// Stopped for two hours: every token expired, every refresh overdue.
	h.clk.Set(t0.Add(2 * time.Hour))
	h.settle()
	want := tenants + 1
	if got := h.w.IdP.TotalTokenRequests(); got != want {
		t.Fatalf("%d token requests right after the jump, want %d (one, then one per 20 ms)", got, want)
	}
	// A caller does not wait behind the backlog.
	var behind string
	for _, st := range h.b.ListTenants() {
		if st.State != broker.StateReady {
			behind = st.Name
		}
	}
	if _, err := h.get(behind, 0); err != nil {
		t.Fatal(err)
	}
	want++
	for i := 0; i < tenants-2; i++ {
		h.clk.Advance(19 * time.Millisecond)
		h.settle()
		if got := h.w.IdP.TotalTokenRequests(); got != want {
			t.Fatalf("step %d: %d token requests 19 ms after the last, want %d", i, got, want)
		}
		h.clk.Advance(time.Millisecond)
		h.settle()
		want++
		if got := h.w.IdP.TotalTokenRequests(); got != want {
			t.Fatalf("step %d: %d token requests 20 ms after the last, want %d", i, got, want)
		}
	}
	h.advance(time.Second)
	for i := range tenants {
		wantState(t, h.status(fmt.Sprintf("tenant%d", i)), broker.StateReady)
		if got := h.requests(i); got != 2 {
			t.Errorf("tenant%d: %d token requests, want 2", i, got)
		}
	}
}

// Pacing keeps its rate when the scheduler wakes a little late (as real
// timers do under load): the slots stay on their grid instead of each
// late wake-up pushing the rest back.
func TestPacingAbsorbsLateWakeUps(t *testing.T) {
	t.Parallel()
	const tenants = 20
	h := newHarness(t, nil, tenants)
	h.b.Start()
	h.settle()
	begin := h.clk.Now()
	for h.w.IdP.TotalTokenRequests() < tenants {
		next := h.settle()
		if next.IsZero() {
			t.Fatalf("the scheduler sleeps with %d of %d tenants fetched", h.w.IdP.TotalTokenRequests(), tenants)
		}
		h.clk.Set(next.Add(time.Millisecond)) // every wake-up 1 ms late
		h.settle()
	}
	// 19 slots of 20 ms after the first, plus the last wake-up's 1 ms.
	if took := h.clk.Now().Sub(begin); took > 19*20*time.Millisecond+time.Millisecond {
		t.Errorf("%d paced fetches took %v with wake-ups 1 ms late; want 381 ms (prefetch_rate 50/s)", tenants, took)
	}
}
