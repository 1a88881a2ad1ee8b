package broker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeclock"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// returnsSoon runs f and fails the test if it has not returned within a
// second: for calls that must never wait on the keystore or Entra ID.
func returnsSoon(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatalf("%s waited on a hung keystore", what)
	}
}

// A keystore that hangs for one app (a Secret Service waiting on an unlock
// prompt): the other app's tenants are fetched and refreshed, ListTenants
// and cached tokens answer at once, callers of the hung app's tenants get
// the recorded error within the keystore timeout, and all of its tenants
// recover together once the keystore answers, without waiting out a
// backoff of their own.
func TestHungKeystore(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 2) // tenant0 and tenant1 of app partner
	w.AddApp("other", "0b0b0b0b-0000-4000-8000-00000000b002", "other-secret-Q~0123456789")
	w.AddTenant("tenant2", brokertest.TenantID(2), "other", true)
	h := newHarnessWith(t, w, 0, broker.Options{KeystoreTimeout: 3 * time.Second})
	release := h.store.HoldGets(w.ClientID)
	defer release()

	// Start-up: each app's credential is read once, for all its tenants;
	// partner's read hangs, while tenant2 (app other) goes on.
	h.b.Start()
	brokertest.WaitFor(t, "both apps' keystore reads", func() bool { return h.store.Gets() == 2 })
	h.nudge("tenant2 to be fetched", func() bool { return h.status("tenant2").State == broker.StateReady })

	returnsSoon(t, "ListTenants", func() { h.b.ListTenants() })
	returnsSoon(t, "a cached GetToken", func() {
		if _, err := h.get("tenant2", 0); err != nil {
			t.Error(err)
		}
	})
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, errs[i] = h.b.GetToken(ctx, broker.TokenRequest{Tenant: []string{"tenant0", "tenant1"}[i%2]})
		})
	}
	wg.Wait() // until the keystore timeout ends the read
	for _, err := range errs {
		wantError(t, err, broker.KindUnavailable, "cannot read the credential of app partner", "no answer within the deadline")
	}
	h.settle()
	if got := h.store.Gets(); got != 2 {
		t.Errorf("%d keystore reads for two apps, want 2 (one per app, shared by every caller)", got)
	}
	wantState(t, h.status("tenant0"), broker.StateFailed, "cannot read the credential of app partner")
	_, err := h.get("tenant1", 0)
	wantError(t, err, broker.KindUnavailable, "cannot read the credential of app partner", "next attempt at")
	if got := h.store.Gets(); got != 2 {
		t.Errorf("a caller inside the retry window read the keystore again (%d reads)", got)
	}

	// Still hung: the app's next read hangs too, while tenant2's refresh
	// (later than that read) goes ahead.
	h.clk.Set(h.status("tenant2").NextRefresh)
	h.nudge("tenant2's refresh during the hung read", func() bool { return h.requests(2) == 2 })
	if h.store.Gets() != 3 {
		t.Errorf("partner's credential was not read again: %d reads", h.store.Gets())
	}

	// The keystore answers: both tenants come back together.
	release()
	h.advance(10 * time.Second)
	for _, name := range []string{"tenant0", "tenant1", "tenant2"} {
		wantState(t, h.status(name), broker.StateReady)
	}
	if h.requests(0) != 1 || h.requests(1) != 1 {
		t.Errorf("token requests %d, %d: partner's tenants should have reached the IdP once each, after the keystore answered", h.requests(0), h.requests(1))
	}
	if !strings.Contains(h.logs.String(), "tenants_resumed=2") {
		t.Errorf("the keystore's answer did not resume both waiting tenants:\n%s", h.logs.String())
	}
}

// Without a stored credential every tenant of the app reports it, with the
// command that fixes it; the keystore is read once for all of them and
// the warning is logged once. Storing one brings every tenant up.
func TestNoCredential(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 5)
	h := newHarnessWith(t, w, 0, broker.Options{Store: brokertest.NewStore()})
	h.b.Start()
	h.advance(time.Second)
	for _, st := range h.b.ListTenants() {
		wantState(t, st, broker.StateNoCredential, "no credential stored for app partner", "brokerctl credential set --app partner")
	}
	_, err := h.get("tenant3", 0)
	wantError(t, err, broker.KindFailedPrecondition, "no credential stored for app partner", "brokerctl credential set --app partner")
	if n := strings.Count(h.logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for one app without a credential, want 1:\n%s", n, h.logs.String())
	}
	if got := w.IdP.TotalTokenRequests(); got != 0 {
		t.Errorf("%d token requests without a credential", got)
	}

	if _, _, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: "partner", Kind: keystore.KindSecret, Value: keystore.NewSecret(w.Secret)}); err != nil {
		t.Fatal(err)
	}
	h.advance(time.Second)
	for _, st := range h.b.ListTenants() {
		wantState(t, st, broker.StateReady)
	}
	// The verification, then one token per tenant.
	if got := w.IdP.TotalTokenRequests(); got != 1+5 {
		t.Errorf("%d token requests, want 6", got)
	}
}

// When the keystore does not answer a write in time, SetCredential says
// the outcome is unknown and how to check, keeps serving with the secret
// it had, and reads the keystore again: once the write lands, the broker
// uses the new secret.
func TestCredentialSetOutcomeUnknown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 1)
	h.b.Start()
	h.settle()
	first, err := h.get("tenant0", 0)
	if err != nil {
		t.Fatal(err)
	}
	const rotated = "rotated-secret-Q~3333333333333333333333333"
	h.w.IdP.AddApp(h.w.ClientID, rotated) // Entra ID now takes only the new secret
	release := h.store.HoldSets()
	_, _, err = h.b.SetCredential(context.Background(), broker.SetRequest{App: h.w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(rotated)})
	wantError(t, err, broker.KindOutcomeUnknown, "may or may not be stored", "brokerctl credential show")
	if strings.Contains(err.Error(), rotated) {
		t.Error("the error contains the secret")
	}
	h.settle()
	if tok, err := h.get("tenant0", 0); err != nil || tok.AccessToken != first.AccessToken {
		t.Fatalf("the cached token is not served after the lost write: %v", err)
	}

	release() // the abandoned write completes
	brokertest.WaitFor(t, "the abandoned write", func() bool {
		return brokertest.StoredSecret(h.store.Store, h.w.ClientID) == rotated
	})
	h.advance(time.Minute)
	st := h.status("tenant0")
	wantState(t, st, broker.StateReady)
	tok, err := h.get("tenant0", 0)
	if err != nil || tok.AccessToken == first.AccessToken {
		t.Fatalf("no new token with the stored secret: %v", err)
	}
	if !strings.Contains(h.logs.String(), "the keystore holds another credential than the one in use") {
		t.Error("the switch to the stored secret was not logged")
	}
	if strings.Contains(h.logs.String(), rotated) || strings.Contains(h.logs.String(), h.w.Secret) {
		t.Error("the logs contain a secret")
	}
	// Reads stop once the window closes.
	h.advance(2 * time.Hour)
	reads := h.store.Gets()
	h.advance(2 * time.Hour)
	if h.store.Gets() != reads {
		t.Errorf("the keystore is still read %v after the lost write", 4*time.Hour)
	}
}

// A read-only keystore (systemd credentials) refuses SetCredential before
// anything is sent to Entra ID, with how to provision the secret instead.
// A stored secret that is unusable (an empty credential file) is a
// person's job: FAILED_PRECONDITION naming the file, retried slowly, not
// UNAVAILABLE retried with backoff.
func TestReadOnlyAndInvalidKeystore(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, w.ClientID), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := keystore.NewSystemd(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarnessWith(t, w, 0, broker.Options{Store: st})

	_, _, err = h.b.SetCredential(context.Background(), broker.SetRequest{App: w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(w.Secret)})
	wantError(t, err, broker.KindFailedPrecondition, "read-only", "systemd-creds encrypt", "LoadCredentialEncrypted="+w.ClientID)
	if got := w.IdP.TotalTokenRequests(); got != 0 {
		t.Errorf("%d token requests for a secret that could not be stored", got)
	}

	h.b.Start()
	h.settle()
	status := h.status("tenant0")
	wantState(t, status, broker.StateFailed, "is unusable", "is empty", "provision it and restart brokerd")
	between(t, "next read of an unusable credential", status.NextRefresh.Sub(h.clk.Now()), 10*time.Minute, 10*time.Minute)
	_, err = h.get("tenant0", 0)
	wantError(t, err, broker.KindFailedPrecondition, "is empty")

	if err := os.Remove(filepath.Join(dir, w.ClientID)); err != nil {
		t.Fatal(err)
	}
	h.advance(10 * time.Minute)
	wantState(t, h.status("tenant0"), broker.StateNoCredential, "no credential file", "LoadCredentialEncrypted="+w.ClientID)
	var be *broker.Error
	if _, err := h.get("tenant0", 0); !errors.As(err, &be) || be.Kind != broker.KindFailedPrecondition {
		t.Errorf("no credential file: %v", err)
	}
}

// emptyStore holds an empty secret for every account, as a keyring item
// written by hand with nothing in it would.
type emptyStore struct{ *brokertest.Store }

func (emptyStore) Get(context.Context, string) (keystore.Secret, error) {
	return keystore.Secret{}, nil
}

// An empty stored secret is an unusable credential: reported, read again
// only every ten minutes, never sent to Entra ID.
func TestEmptyStoredSecret(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 2)
	h := newHarnessWith(t, w, 0, broker.Options{Store: emptyStore{brokertest.NewStore()}})
	h.b.Start()
	h.advance(time.Hour)
	for _, st := range h.b.ListTenants() {
		wantState(t, st, broker.StateFailed, "unusable", "empty", "brokerctl credential set --app partner")
	}
	if got := w.IdP.TotalTokenRequests(); got != 0 {
		t.Errorf("%d token requests with an empty secret", got)
	}
	if n := strings.Count(h.logs.String(), `msg="reading the credential failed"`); n < 6 || n > 7 {
		t.Errorf("the keystore was read %d times in an hour, want one read every ten minutes", n)
	}
}

// When an app's credential can be read after failed reads (here: a write
// whose answer was lost lands, and a re-read finds it), the failures
// recorded for want of it no longer apply: no caller is told "no
// credential stored" any more, and every tenant is fetched.
func TestCredentialReadAfterFailuresClearsThem(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 5)
	st := brokertest.NewStore()
	h := newHarnessWith(t, w, 0, broker.Options{Store: st, KeystoreTimeout: 2 * time.Second})
	h.b.Start()
	h.advance(time.Second)
	wantState(t, h.status("tenant4"), broker.StateNoCredential)

	// A keyring waiting on an unlock prompt: the write and the re-read
	// hang; the user unlocks, the write lands, the re-read finds it.
	releaseSets, releaseGets := st.HoldSets(), st.HoldGets(w.ClientID)
	_, _, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(w.Secret)})
	wantError(t, err, broker.KindOutcomeUnknown)
	releaseSets()
	brokertest.WaitFor(t, "the abandoned write", func() bool {
		return brokertest.StoredSecret(st.Store, w.ClientID) == w.Secret
	})
	releaseGets()
	brokertest.WaitFor(t, "the re-read", func() bool { return strings.Contains(h.logs.String(), "credential read from the keystore") })
	h.settle()
	for _, st := range h.b.ListTenants() {
		if st.State == broker.StateNoCredential {
			t.Errorf("%s: still %v after the credential was read", st.Name, st.State)
		}
	}
	if _, err := h.get("tenant4", 0); err != nil {
		t.Errorf("GetToken after the credential was read: %v", err)
	}
	h.advance(time.Second)
	for _, st := range h.b.ListTenants() {
		wantState(t, st, broker.StateReady)
	}
}

// A write whose answer was lost, for an app with no secret yet: the store
// is read again within the minute (not at the ten-minute pace of "no
// credential"), and the tenants come up once the write lands.
func TestLostFirstWriteIsFoundSoon(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	st := brokertest.NewStore()
	h := newHarnessWith(t, w, 0, broker.Options{Store: st})
	h.b.Start()
	h.advance(time.Second)
	release := st.HoldSets()
	_, _, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(w.Secret)})
	wantError(t, err, broker.KindOutcomeUnknown, "check with `brokerctl credential show --app partner` in a minute")
	h.settle() // the first re-read finds nothing yet
	release()
	brokertest.WaitFor(t, "the abandoned write", func() bool {
		return brokertest.StoredSecret(st.Store, w.ClientID) == w.Secret
	})
	h.advance(time.Minute)
	wantState(t, h.status("tenant0"), broker.StateReady)
}

// lateStore's first Set never answers; its write lands when hold is
// closed, after later Sets have answered.
type lateStore struct {
	*brokertest.Store
	hold  chan struct{}
	first atomic.Bool
}

func (s *lateStore) Set(ctx context.Context, account string, sec keystore.Secret) error {
	if s.first.CompareAndSwap(false, true) {
		go func() {
			<-s.hold
			s.Store.Store.Set(context.Background(), account, sec)
		}()
		<-ctx.Done()
		return fmt.Errorf("keystore: no answer: %w", ctx.Err())
	}
	return s.Store.Set(ctx, account, sec)
}

// A lost write that lands after a later successful SetCredential: the
// store then holds the older secret, and brokerd (which reads the store
// again for a while after a lost write) switches to it, as a restart
// would, instead of serving with a secret the store no longer holds.
func TestLateWriteAfterNewerSetIsFollowed(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	st := &lateStore{Store: w.Store(t), hold: make(chan struct{})}
	h := newHarnessWith(t, w, 0, broker.Options{Store: st})
	h.b.Start()
	h.advance(time.Second)
	const s1, s2 = "secret-one-Q~11111111111111111111111111", "secret-two-Q~22222222222222222222222222"
	w.IdP.AddApp(w.ClientID, s1)
	_, _, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(s1)})
	wantError(t, err, broker.KindOutcomeUnknown)
	h.settle()
	w.IdP.AddApp(w.ClientID, s2)
	if _, _, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(s2)}); err != nil {
		t.Fatal(err)
	}
	close(st.hold)
	brokertest.WaitFor(t, "the late write", func() bool {
		return brokertest.StoredSecret(st.Store.Store, w.ClientID) == s1
	})
	h.advance(time.Hour)
	if !strings.Contains(h.logs.String(), "the keystore holds another credential than the one in use") {
		t.Errorf("the store holds secret one; brokerd did not switch to it")
	}
	// Entra ID takes only secret two: the tenant says so now, as it would
	// after a restart, rather than at some later restart.
	wantState(t, h.status("tenant0"), broker.StateFailed, "AADSTS7000215")
}

// hookClock is a fake clock that holds the first call to Now made by
// Broker.land until release is closed: it stops a flight just before it
// lands, to let something else happen first.
type hookClock struct {
	*fakeclock.Clock
	once             sync.Once
	entered, release chan struct{}
}

func (c *hookClock) Now() time.Time {
	pcs := make([]uintptr, 1)
	if runtime.Callers(2, pcs) == 1 {
		if f, _ := runtime.CallersFrames(pcs).Next(); strings.HasSuffix(f.Function, ".(*Broker).land") {
			c.once.Do(func() { close(c.entered); <-c.release })
		}
	}
	return c.Clock.Now()
}

// failFirstGet fails its first Get as a vanished session bus would.
type failFirstGet struct {
	*brokertest.Store
	n atomic.Int32
}

func (s *failFirstGet) Get(ctx context.Context, account string) (keystore.Secret, error) {
	if s.n.Add(1) == 1 {
		return keystore.Secret{}, fmt.Errorf("%w: test: bus gone", keystore.ErrUnavailable)
	}
	return s.Store.Get(ctx, account)
}

// A caller's acquisition that failed for want of the credential, landing
// only after the credential was read, does not strand its tenant: the
// tenant is fetched in the background all the same.
func TestCredentialReadBeforeAFailedFlightLands(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	clk := &hookClock{Clock: fakeclock.New(t0), entered: make(chan struct{}), release: make(chan struct{})}
	logs := &brokertest.LogBuffer{}
	b := w.NewBroker(t, broker.Options{Store: &failFirstGet{Store: w.Store(t)}, Clock: clk, Logger: brokertest.DebugLogger(logs)})
	errc := make(chan error, 1)
	go func() {
		_, err := b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant0"})
		errc <- err
	}()
	<-clk.entered // the caller's flight got "cannot read" and is about to land
	clk.Advance(time.Second)
	b.Start() // the scheduler reads the credential again, successfully
	brokertest.WaitFor(t, "the second read", func() bool { return strings.Contains(logs.String(), "credential read from the keystore") })
	close(clk.release)
	<-errc
	for range 10 {
		clk.Advance(time.Second)
		broker.Settle(t, b)
	}
	if st := b.ListTenants()[0]; st.State != broker.StateReady {
		t.Errorf("tenant0: %v (%s), %d token requests", st.State, st.LastError, w.IdP.TokenRequests(brokertest.TenantID(0)))
	}
}

// Close during SetCredential fails it as shutting down.
func TestCloseDuringSetCredential(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 1)
	release := h.store.HoldSets()
	defer release()
	errc := make(chan error, 1)
	go func() {
		_, _, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: h.w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(h.w.Secret)})
		errc <- err
	}()
	brokertest.WaitFor(t, "the write", func() bool { return h.store.Sets() == 2 })
	h.b.Close()
	wantError(t, <-errc, broker.KindUnavailable, "shutting down", "may or may not be stored")
}

// Tenants waiting for a hung keystore read hold no prefetch_concurrency
// slot: another app's tenant is fetched while the read still hangs.
func TestHungKeystoreHoldsNoBackgroundSlots(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 20) // more than prefetch_concurrency (8)
	w.AddApp("other", "0b0b0b0b-0000-4000-8000-00000000b002", "other-secret-Q~0123456789")
	w.AddTenant("zz-other", brokertest.TenantID(99), "other", true)
	h := newHarnessWith(t, w, 0, broker.Options{KeystoreTimeout: time.Minute})
	release := h.store.HoldGets(w.ClientID)
	defer release()
	h.b.Start()
	h.nudge("zz-other to be fetched", func() bool { return h.status("zz-other").State == broker.StateReady })
	if st := h.status("tenant0"); st.State != broker.StatePending {
		t.Errorf("tenant0: %v (%s); want pending, its keystore read still hanging", st.State, st.LastError)
	}
}
