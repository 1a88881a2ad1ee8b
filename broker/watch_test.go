package broker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// watchEvent is one call of a watch's send.
type watchEvent struct {
	tok *broker.Token
	err *broker.Error
}

// watcher is a WatchToken running in its own goroutine.
type watcher struct {
	t      *testing.T
	events chan watchEvent
	done   chan error
	cancel context.CancelFunc
}

func (h *harness) watch(req broker.TokenRequest) *watcher { return h.startWatch(req, nil) }

// watchHeld is a watch whose consumer is slow to take its first event:
// the send of that event returns only when release is called.
func (h *harness) watchHeld(req broker.TokenRequest) (w *watcher, release func()) {
	hold := make(chan struct{})
	return h.startWatch(req, hold), func() { close(hold) }
}

func (h *harness) startWatch(req broker.TokenRequest, hold <-chan struct{}) *watcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{t: h.t, events: make(chan watchEvent, 64), done: make(chan error, 1), cancel: cancel}
	h.t.Cleanup(cancel)
	go func() {
		w.done <- h.b.WatchToken(ctx, req, func(tok *broker.Token, err *broker.Error) error {
			if (tok == nil) == (err == nil) {
				h.t.Errorf("send(%v, %v): want exactly one of a token and an error", tok, err)
			}
			w.events <- watchEvent{tok, err}
			if hold != nil {
				select {
				case <-hold:
				case <-ctx.Done():
				}
				hold = nil
			}
			return nil
		})
	}()
	return w
}

// next waits for the watch's next event.
func (w *watcher) next() watchEvent {
	w.t.Helper()
	select {
	case ev := <-w.events:
		return ev
	case err := <-w.done:
		w.t.Fatalf("the watch ended: %v", err)
	case <-time.After(10 * time.Second):
		w.t.Fatal("no event from the watch")
	}
	return watchEvent{}
}

func (w *watcher) nextToken() *broker.Token {
	w.t.Helper()
	ev := w.next()
	if ev.tok == nil {
		w.t.Fatalf("event: error %v, want a token", ev.err)
	}
	return ev.tok
}

// end waits for the watch to return, and fails on any event it sent that
// the test did not take.
func (w *watcher) end() error {
	w.t.Helper()
	var err error
	select {
	case err = <-w.done:
	case <-time.After(10 * time.Second):
		w.t.Fatal("the watch did not end")
	}
	close(w.events)
	for ev := range w.events {
		w.t.Errorf("unexpected event: token %v, error %v", ev.tok, ev.err)
	}
	return err
}

// A watch sends the current token at once, each refreshed token as it
// lands (a new token, expiring later), an error event when the refresh
// fails while the watch goes on, and the token of the retry that works.
// It ends when its caller cancels it, and when the broker closes.
func TestWatchFollowsRefreshesAndFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 1, `min_valid = "10s"`)
	h.w.IdP.SetLifetime(time.Minute)
	h.b.Start()
	h.settle()

	w := h.watch(broker.TokenRequest{Tenant: "tenant0"})
	cur, err := h.get("tenant0", 0)
	if err != nil {
		t.Fatal(err)
	}
	prev := w.nextToken()
	if prev != cur {
		t.Fatalf("first event %v, want the cached token %v", prev, cur)
	}
	for cycle := 1; cycle <= 2; cycle++ {
		h.runUntil(h.status("tenant0").NextRefresh)
		tok := w.nextToken()
		if tok.AccessToken == prev.AccessToken || !tok.ExpiresAt.After(prev.ExpiresAt) {
			t.Fatalf("cycle %d: token expiring %v after one expiring %v; want a new one expiring later", cycle, tok.ExpiresAt, prev.ExpiresAt)
		}
		if got, _ := h.get("tenant0", 0); got != tok {
			t.Errorf("cycle %d: the watch sent another token than GetToken returns", cycle)
		}
		prev = tok
	}

	// The refresh fails: an error event, and the watch goes on.
	h.w.IdP.SetFault(brokertest.TenantID(0), &entratest.Fault{Status: 503})
	h.runUntil(h.status("tenant0").NextRefresh)
	ev := w.next()
	if ev.err == nil || ev.err.Kind != broker.KindUnavailable || ev.err.Msg == "" {
		t.Fatalf("event after a failed refresh: %+v, want an UNAVAILABLE error", ev)
	}
	wantState(t, h.status("tenant0"), broker.StateDegraded)
	// The retry works: the new token.
	h.w.IdP.SetFault(brokertest.TenantID(0), nil)
	h.runUntil(h.status("tenant0").NextRefresh)
	if tok := w.nextToken(); tok.AccessToken == prev.AccessToken || !tok.ExpiresAt.After(prev.ExpiresAt) {
		t.Fatalf("token after recovery expires %v, want a new one after %v", tok.ExpiresAt, prev.ExpiresAt)
	}
	if got := h.requests(0); got != 5 {
		t.Errorf("%d token requests, want 5: the watch adds none", got)
	}

	w.cancel()
	if err := w.end(); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled watch returned %v, want context.Canceled", err)
	}

	w = h.watch(broker.TokenRequest{Tenant: "tenant0"})
	w.nextToken()
	h.b.Close()
	wantError(t, w.end(), broker.KindUnavailable, "shutting down")
}

// failingTenant0 is a broker whose one tenant, tenant0, failed its first
// acquisition (Entra ID answers 503 until the test clears the fault).
func failingTenant0(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, nil, 1)
	h.w.IdP.SetFault(brokertest.TenantID(0), &entratest.Fault{Status: 503})
	h.b.Start()
	h.settle()
	wantState(t, h.status("tenant0"), broker.StateFailed)
	return h
}

// A watch whose first acquisition fails starts with the error event and
// then sends the token once an attempt works; a request GetToken refuses
// ends the watch at once, with nothing sent.
func TestWatchStartsWithErrorAndRefusesWhatGetTokenRefuses(t *testing.T) {
	t.Parallel()
	h := failingTenant0(t)
	w := h.watch(broker.TokenRequest{Tenant: "tenant0"})
	if ev := w.next(); ev.err == nil || ev.err.Kind != broker.KindUnavailable {
		t.Fatalf("first event %+v, want the UNAVAILABLE failure", ev)
	}
	brokertest.WaitFor(t, "the watch to wait for a change", func() bool { return broker.Watched(h.b, "tenant0") })
	h.w.IdP.SetFault(brokertest.TenantID(0), nil)
	h.runUntil(h.status("tenant0").NextRefresh)
	if tok := w.nextToken(); tok.TenantID != brokertest.TenantID(0) {
		t.Errorf("token for tenant %s", tok.TenantID)
	}
	w.cancel()
	w.end()

	for _, tt := range []struct {
		req  broker.TokenRequest
		kind broker.Kind
	}{
		{broker.TokenRequest{Tenant: "nowhere"}, broker.KindNotFound},
		{broker.TokenRequest{Tenant: ""}, broker.KindInvalidArgument},
		{broker.TokenRequest{Tenant: "tenant0", Scopes: []string{"https://evil.example/.default"}}, broker.KindPermissionDenied},
		{broker.TokenRequest{Tenant: "tenant0", MinValid: 25 * time.Hour}, broker.KindInvalidArgument},
	} {
		w := h.watch(tt.req)
		wantError(t, w.end(), tt.kind)
	}
}

// A token that lands while a watch is still sending its first event, a
// failure, is sent next: it is not taken for the token GetToken refused.
func TestWatchSendsATokenThatLandsDuringItsFirstEvent(t *testing.T) {
	t.Parallel()
	h := failingTenant0(t)
	w, release := h.watchHeld(broker.TokenRequest{Tenant: "tenant0"})
	if ev := w.next(); ev.err == nil || ev.err.Kind != broker.KindUnavailable {
		t.Fatalf("first event %+v, want the UNAVAILABLE failure", ev)
	}
	h.w.IdP.SetFault(brokertest.TenantID(0), nil)
	h.runUntil(h.status("tenant0").NextRefresh)
	wantState(t, h.status("tenant0"), broker.StateReady)
	release()
	if tok := w.nextToken(); tok.TenantID != brokertest.TenantID(0) || !tok.ExpiresAt.After(h.clk.Now()) {
		t.Errorf("token for tenant %s expiring %s", tok.TenantID, tok.ExpiresAt)
	}
	w.cancel()
	if err := w.end(); !errors.Is(err, context.Canceled) {
		t.Errorf("watch ended with %v, want context.Canceled", err)
	}
}

// eightySecondTokens is a started broker whose one tenant, tenant0, has a
// token that lasts 80 s (refreshed 5 s before it expires, at the earliest
// 67 s after it was issued) and is age old.
func eightySecondTokens(t *testing.T, age time.Duration) *harness {
	t.Helper()
	world := brokertest.NewWorld(t, 1)
	world.IdP.SetLifetime(80 * time.Second)
	h := newHarness(t, world, 0, `min_valid = "5s"`, `refresh_before = "5s"`)
	h.b.Start()
	h.settle()
	h.advance(age)
	return h
}

// minValidRefused is a watch of tenant0 whose first event refuses its
// min_valid of 40 s: tokens last 80 s, and at 45 s the token has 35 s
// left and is too young to be replaced. held is that token.
func minValidRefused(t *testing.T, watch func(*harness, broker.TokenRequest) *watcher) (h *harness, w *watcher, held *broker.Token) {
	t.Helper()
	h = eightySecondTokens(t, 45*time.Second)
	held, err := h.get("tenant0", 0)
	if err != nil {
		t.Fatal(err)
	}
	w = watch(h, broker.TokenRequest{Tenant: "tenant0", MinValid: 40 * time.Second})
	if ev := w.next(); ev.err == nil || ev.err.Kind != broker.KindUnavailable || !strings.Contains(ev.err.Msg, "reacquire_interval") {
		t.Fatalf("first event %+v, want the refusal of min_valid 40s", ev)
	}
	return h, w, held
}

// A watch whose first event refuses the caller's min_valid does not send
// the token it refused after that event; the next token it sends is the
// refresh's.
func TestWatchDoesNotSendTheTokenItsFirstEventRefused(t *testing.T) {
	t.Parallel()
	h, wt, held := minValidRefused(t, (*harness).watch)
	nextIsNewerThan(t, h, wt, held)
	wt.cancel()
	wt.end()
}

// nextIsNewerThan waits for watch w of tenant0 to wait for a change, runs
// the clock to the tenant's next refresh, and checks that the watch then
// sends a newer token than refused, the token its first event refused.
func nextIsNewerThan(t *testing.T, h *harness, w *watcher, refused *broker.Token) {
	t.Helper()
	brokertest.WaitFor(t, "the watch to wait for a change", func() bool { return broker.Watched(h.b, "tenant0") })
	h.runUntil(h.status("tenant0").NextRefresh)
	if tok := w.nextToken(); tok.AccessToken == refused.AccessToken || !tok.ExpiresAt.After(refused.ExpiresAt) {
		t.Errorf("the watch sent the token its first event refused (expiring %s); want the next one", tok.ExpiresAt)
	}
}

// A watch whose first event is the error of the acquisition it started
// sends neither the token it refused nor that error again: the next event
// is the next token. Tokens last 80 s; at 62 s the token has 18 s left,
// short of the watch's min_valid of 20 s, and is old enough to be
// replaced. The acquisition fails, or brings a token of 15 s.
func TestWatchAfterItsOwnAcquisitionFailsSendsOnlyWhatIsNew(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		fault func(*entratest.Server)
		want  string
	}{
		{"Entra ID fails", func(idp *entratest.Server) {
			idp.SetFault(brokertest.TenantID(0), &entratest.Fault{Status: 503})
		}, "503"},
		{"the new token is short of min_valid", func(idp *entratest.Server) { idp.SetLifetime(15 * time.Second) }, "min_valid 20s is longer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := eightySecondTokens(t, 62*time.Second)
			tt.fault(h.w.IdP)
			before := h.requests(0)

			w := h.watch(broker.TokenRequest{Tenant: "tenant0", MinValid: 20 * time.Second})
			if ev := w.next(); ev.err == nil || !strings.Contains(ev.err.Msg, tt.want) {
				t.Fatalf("first event %+v, want an error saying %q", ev, tt.want)
			}
			if got := h.requests(0) - before; got != 1 {
				t.Fatalf("%d token requests for the watch, want 1", got)
			}
			refused, err := h.get("tenant0", 0)
			if err != nil {
				t.Fatal(err)
			}
			h.w.IdP.SetFault(brokertest.TenantID(0), nil)
			nextIsNewerThan(t, h, w, refused)
			w.cancel()
			w.end()
		})
	}
}

// A failure that lands while a watch is still sending its first event, a
// refusal, is sent next.
func TestWatchSendsAFailureThatLandsDuringItsFirstEvent(t *testing.T) {
	t.Parallel()
	var release func()
	h, wt, _ := minValidRefused(t, func(h *harness, req broker.TokenRequest) *watcher {
		var w *watcher
		w, release = h.watchHeld(req)
		return w
	})
	h.w.IdP.SetFault(brokertest.TenantID(0), &entratest.Fault{Status: 503})
	h.runUntil(h.status("tenant0").NextRefresh)
	wantState(t, h.status("tenant0"), broker.StateDegraded)
	release()
	if ev := wt.next(); ev.err == nil || ev.err.Kind != broker.KindUnavailable || strings.Contains(ev.err.Msg, "reacquire_interval") {
		t.Errorf("event after the refresh failed: %+v, want its UNAVAILABLE failure", ev)
	}
	wt.cancel()
	wt.end()
}

// A watched extra scope set counts as used: it is refreshed, and each of
// its tokens sent, for as long as it is watched, never dropped as unused.
func TestWatchKeepsItsScopeSet(t *testing.T) {
	t.Parallel()
	w := worldAllowing(t, graph)
	h := newHarness(t, w, 0) // tokens last an hour; unused sets go after two
	h.b.Start()
	h.settle()
	wt := h.watch(broker.TokenRequest{Tenant: "tenant0", Scopes: []string{graph}})
	prev := wt.nextToken()
	issued := issuedFor(t, w.IdP, graph)
	for end := h.clk.Now().Add(5 * time.Hour); h.clk.Now().Before(end); {
		h.advance(15 * time.Minute)
		if n := issuedFor(t, w.IdP, graph); n > issued {
			issued = n
			tok := wt.nextToken()
			if tok.Scopes[0] != graph || !tok.ExpiresAt.After(prev.ExpiresAt) {
				t.Fatalf("token for %v expiring %v after %v", tok.Scopes, tok.ExpiresAt, prev.ExpiresAt)
			}
			prev = tok
		}
	}
	if issued < 6 {
		t.Errorf("%d tokens for the watched set in 5 hours, want one at first and a refresh each hour or so", issued)
	}
	if strings.Contains(h.logs.String(), "unused scope set dropped") {
		t.Error("the watched scope set was dropped as unused")
	}
	if got := broker.ScopeSets(h.b, "tenant0"); got != 2 {
		t.Errorf("tenant0 keeps %d scope sets, want 2", got)
	}
	wt.cancel()
	wt.end()
}

// A watch that starts on a tenant whose token has expired, while Entra ID
// fails, sends the failure and then nothing until a new token lands: never
// the expired token it still holds.
func TestWatchNeverSendsAnExpiredToken(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 1)
	h.w.IdP.SetLifetime(10 * time.Minute)
	h.b.Start()
	h.settle()
	wantState(t, h.status("tenant0"), broker.StateReady)
	h.w.IdP.SetFault(brokertest.TenantID(0), &entratest.Fault{Status: 503})
	h.advance(15 * time.Minute)
	wantState(t, h.status("tenant0"), broker.StateFailed)

	w := h.watch(broker.TokenRequest{Tenant: "tenant0"})
	if ev := w.next(); ev.err == nil || ev.err.Kind != broker.KindUnavailable {
		t.Fatalf("first event %+v, want the UNAVAILABLE failure", ev)
	}
	h.w.IdP.SetFault(brokertest.TenantID(0), nil)
	h.runUntil(h.status("tenant0").NextRefresh)
	tok := w.nextToken()
	if !tok.ExpiresAt.After(h.clk.Now()) {
		t.Errorf("the watch sent a token that expired at %s; it is %s", tok.ExpiresAt, h.clk.Now())
	}
	w.cancel()
	w.end()
}
