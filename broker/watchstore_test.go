package broker_test

import (
	"context"
	"errors"
	"strings"
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

// A credential replaced in the keystore by other means (a PEM bundle
// written where the secret was) is read at once when the keystore reports
// the change, whatever the case of the account it names, and every
// tenant's tokens come from it.
func TestKeystoreChangeFollowed(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 2)
	st := &watchingStore{Store: w.Store(t), changed: make(chan func(string), 1)}
	h := newCredHarness(t, w, broker.Options{Store: st})
	h.b.Start()
	changed := <-st.changed
	h.advance(time.Second)
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
