package broker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// watchingStore reports changes as a keystore of files rotated in place
// would: the test calls the function Watch hands it.
type watchingStore struct {
	*brokertest.Store
	changed chan func(account string)
	err     error
}

func (s *watchingStore) Watch(ctx context.Context, changed func(account string)) error {
	if s.err != nil {
		return s.err
	}
	s.changed <- changed
	<-ctx.Done()
	return nil
}

// watchedKeystore is a started broker of n tenants, settled a second
// after its start, whose keystore st reports changes: changed is the
// function its Watch was handed.
func watchedKeystore(t *testing.T, n int) (w *brokertest.World, st *watchingStore, h *harness, changed func(account string)) {
	t.Helper()
	w = brokertest.NewWorld(t, n)
	st = &watchingStore{Store: w.Store(t), changed: make(chan func(string), 1)}
	h = newCredHarness(t, w, broker.Options{Store: st})
	h.b.Start()
	changed = <-st.changed
	h.advance(time.Second)
	return w, st, h, changed
}

// A credential replaced in the keystore by other means (a PEM bundle
// written where the secret was) is read at once when the keystore reports
// the change, whatever the case of the account it names, and every
// tenant's tokens come from it.
func TestKeystoreChangeFollowed(t *testing.T) {
	t.Parallel()
	w, st, h, changed := watchedKeystore(t, 2)
	now := h.clk.Now()
	cert, pemData := newCert(t, now, now.Add(365*24*time.Hour))
	w.IdP.AddCertificate(w.ClientID, cert)
	w.IdP.RemoveSecret(w.ClientID)
	if err := st.Store.Store.Set(context.Background(), w.ClientID, keystore.NewSecret(string(pemData))); err != nil {
		t.Fatal(err)
	}
	changed(strings.ToUpper(w.ClientID))
	h.advance(time.Second)
	if !strings.Contains(h.logs.String(), "the keystore holds another credential than the one in use; using it") {
		t.Errorf("the change was not followed:\n%s", h.logs.String())
	}
	for i := range 2 {
		if a := lastAuth(t, w, i); a.Method != "certificate" {
			t.Errorf("tenant%d: %s", i, a.Method)
		}
	}
	info, err := h.b.GetCredential(context.Background(), w.App)
	if err != nil || info.Kind != broker.CredentialCertificate || !info.SetAt.IsZero() {
		t.Errorf("GetCredential: %+v, %v", info, err)
	}
	noLeak(t, "the log", h.logs.String(), keyMaterial(t, pemData)...)
}

// staleStore's Get reads the value, then, while held, waits before it
// returns it: the value can change in between, as a file can be replaced
// after brokerd read it.
type staleStore struct {
	*watchingStore
	inside chan struct{} // receives when a held Get has read and waits

	mu   sync.Mutex
	hold chan struct{} // closed to let the held Gets return; nil: no hold
}

// holdGets makes Gets wait after reading, until release is called.
func (s *staleStore) holdGets() (release func()) {
	c := make(chan struct{})
	s.mu.Lock()
	s.hold = c
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.hold = nil
		s.mu.Unlock()
		close(c)
	}
}

func (s *staleStore) Get(ctx context.Context, account string) (keystore.Secret, error) {
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	v, err := s.watchingStore.Get(ctx, account)
	if hold != nil {
		s.inside <- struct{}{}
		<-hold
	}
	return v, err
}

// A change the keystore reports while a read is in flight is not lost:
// that read may have seen the value from before the change, so the
// credential is read once more when it lands.
func TestKeystoreChangeDuringRead(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	ws := &watchingStore{Store: w.Store(t), changed: make(chan func(string), 1)}
	st := &staleStore{watchingStore: ws, inside: make(chan struct{}, 1)}
	h := newCredHarness(t, w, broker.Options{Store: st})
	release := st.holdGets()
	h.b.Start()
	changed := <-ws.changed
	<-st.inside // the first read has the secret and waits
	release()
	h.advance(time.Second)
	wantState(t, h.status("tenant0"), broker.StateReady)

	// A change is reported, its read takes the old value and waits; the
	// value changes and that change is reported while the read is held.
	release = st.holdGets()
	changed(w.ClientID)
	<-st.inside
	const rotated = "rotated-secret-Q~changed-during-read-000"
	w.IdP.AddApp(w.ClientID, rotated) // the old secret is revoked
	if err := ws.Store.Store.Set(context.Background(), w.ClientID, keystore.NewSecret(rotated)); err != nil {
		t.Fatal(err)
	}
	changed(w.ClientID)
	release() // the next read returns at once
	h.advance(time.Second)
	if !strings.Contains(h.logs.String(), "the keystore holds another credential than the one in use; using it") {
		t.Fatalf("the change reported during a read was lost:\n%s", h.logs.String())
	}
	h.advance(time.Hour)
	wantState(t, h.status("tenant0"), broker.StateReady)
}

// Neither the keystore watch nor the read of a GetCredential whose caller
// gave up outlives Close.
//
// Not parallel: it looks at every goroutine of the broker package.
func TestCredentialGoroutinesEndAtClose(t *testing.T) {
	w := brokertest.NewWorld(t, 1)
	st := &watchingStore{Store: w.Store(t), changed: make(chan func(string), 1)}
	h := newCredHarness(t, w, broker.Options{Store: st, KeystoreTimeout: time.Hour})
	release := st.HoldGets(w.ClientID)
	defer release()
	h.b.Start()
	<-st.changed
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := h.b.GetCredential(ctx, w.App)
	wantError(t, err, broker.KindDeadlineExceeded, "reading the credential of app partner")
	returnsSoon(t, "Close", h.b.Close)
	if g := brokertest.Goroutines("github.com/tokenbroker/tokenbroker/broker"); len(g) != 0 {
		t.Errorf("%d goroutines outlived Close:\n%s", len(g), strings.Join(g, "\n\n"))
	}
}

// A keystore that cannot be watched is said so once, and brokerd runs on.
func TestKeystoreWatchFails(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	st := &watchingStore{Store: w.Store(t), err: errors.New("inotify: too many watches")}
	h := newCredHarness(t, w, broker.Options{Store: st})
	h.b.Start()
	h.advance(time.Second)
	wantState(t, h.status("tenant0"), broker.StateReady)
	brokertest.WaitFor(t, "the warning", func() bool {
		return strings.Contains(h.logs.String(), `level=WARN msg="cannot watch the keystore for changes; a credential replaced in it is read at the next restart" keystore=memory error="inotify: too many watches"`)
	})
}

// A stored credential whose value is the same but whose expiry changed (set
// again with --expires, by another brokerd or by hand) is described anew,
// without fetching any tenant again.
func TestKeystoreSameValueNewExpiry(t *testing.T) {
	t.Parallel()
	w, st, h, changed := watchedKeystore(t, 1)
	sent := w.IdP.TotalTokenRequests()
	expires := h.clk.Now().Add(400 * 24 * time.Hour).UTC().Truncate(time.Second)
	v := keystore.Credential{Kind: keystore.KindSecret, Value: keystore.NewSecret(w.Secret), Expires: expires}.Encode()
	if err := st.Store.Store.Set(context.Background(), w.ClientID, v); err != nil {
		t.Fatal(err)
	}
	changed(w.ClientID)
	h.advance(time.Second)
	info, err := h.b.GetCredential(context.Background(), w.App)
	if err != nil || !info.ExpiresAt.Equal(expires) {
		t.Errorf("GetCredential after the expiry changed: %+v, %v; want expires %v", info, err, expires)
	}
	if got := w.IdP.TotalTokenRequests(); got != sent {
		t.Errorf("%d token requests for a credential whose value did not change", got-sent)
	}
}
