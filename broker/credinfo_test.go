package broker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// GetCredential describes the credential without its value: a
// certificate's thumbprints, subject and expiry, when it was set. An app
// with none stored is FAILED_PRECONDITION, saying how to store one.
func TestGetCredential(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	w.AddApp("empty", "0b0b0b0b-0000-4000-8000-00000000b002", "empty-secret-Q~0123456789")
	st := w.Store(t)
	if err := st.Delete(context.Background(), "0b0b0b0b-0000-4000-8000-00000000b002"); err != nil {
		t.Fatal(err)
	}
	h := newCredHarness(t, w, broker.Options{Store: st})
	ctx := context.Background()

	info, err := h.b.GetCredential(ctx, w.App)
	if err != nil || info.Kind != broker.CredentialSecret || info.App != w.App || info.Keystore != "memory" || !info.SetAt.IsZero() || info.ThumbprintSHA1 != "" {
		t.Errorf("a bare stored secret: %+v, %v", info, err)
	}
	_, err = h.b.GetCredential(ctx, "empty")
	wantError(t, err, broker.KindFailedPrecondition, "no credential stored for app empty", "brokerctl credential set --app empty")
	_, err = h.b.GetCredential(ctx, "nosuchapp")
	wantError(t, err, broker.KindNotFound, `app "nosuchapp" is not configured`)

	now := h.clk.Now()
	cert, pemData := newCert(t, now, now.Add(200*24*time.Hour))
	w.IdP.AddCertificate(w.ClientID, cert)
	if _, _, err := setCert(h, w.App, pemData); err != nil {
		t.Fatal(err)
	}
	info, err = h.b.GetCredential(ctx, w.App)
	if err != nil {
		t.Fatal(err)
	}
	want := broker.CredentialInfo{App: w.App, Kind: broker.CredentialCertificate, Keystore: "memory",
		SetAt: now.UTC().Truncate(time.Second), ExpiresAt: cert.NotAfter, ThumbprintSHA1: entratest.Thumbprint(cert),
		ThumbprintSHA256: info.ThumbprintSHA256, Subject: "CN=tokenbroker test"}
	if !info.SetAt.Equal(want.SetAt) || !info.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("set at %v, expires %v; want %v, %v", info.SetAt, info.ExpiresAt, want.SetAt, want.ExpiresAt)
	}
	info.SetAt, info.ExpiresAt, want.SetAt, want.ExpiresAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if info != want || len(info.ThumbprintSHA256) != 64 {
		t.Errorf("GetCredential = %+v\nwant %+v", info, want)
	}

	// What a restart reads back from the store is described the same.
	b2 := w.NewBroker(t, broker.Options{Store: st, Clock: h.clk})
	again, err := b2.GetCredential(ctx, w.App)
	if err != nil || again.Kind != broker.CredentialCertificate || again.ThumbprintSHA256 != info.ThumbprintSHA256 ||
		!again.SetAt.Equal(now.UTC().Truncate(time.Second)) || !again.ExpiresAt.Equal(cert.NotAfter) {
		t.Errorf("after a restart: %+v, %v", again, err)
	}
}

// While the keystore hangs, GetCredential answers within the keystore
// timeout (or the caller's deadline) and cached tokens are still served.
func TestGetCredentialHungKeystore(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	h := newCredHarness(t, w, broker.Options{})
	h.b.Start()
	h.advance(time.Second)
	tok, err := h.get("tenant0", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Without a credential in hand, GetCredential must read the store.
	if _, err := h.b.DeleteCredential(context.Background(), w.App); err != nil {
		t.Fatal(err)
	}
	if err := h.store.Store.Set(context.Background(), w.ClientID, keystore.NewSecret(w.Secret)); err != nil {
		t.Fatal(err)
	}
	release := h.store.HoldGets(w.ClientID)
	defer release()

	answered := make(chan error, 1)
	go func() {
		_, err := h.b.GetCredential(context.Background(), w.App)
		answered <- err
	}()
	returnsSoon(t, "a cached GetToken", func() {
		if got, err := h.get("tenant0", 0); err != nil || got.AccessToken != tok.AccessToken {
			t.Errorf("cached token during a hung keystore read: %v", err)
		}
	})
	select {
	case err := <-answered:
		wantError(t, err, broker.KindUnavailable, "cannot read the credential of app partner")
	case <-time.After(10 * time.Second):
		t.Fatal("GetCredential did not answer within the keystore timeout")
	}

	h.clk.Advance(time.Hour) // past the failed read's retry time
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = h.b.GetCredential(ctx, w.App)
	wantError(t, err, broker.KindDeadlineExceeded, "reading the credential of app partner")

	release()
	h.clk.Advance(time.Hour)
	brokertest.WaitFor(t, "GetCredential once the keystore answers", func() bool {
		info, err := h.b.GetCredential(context.Background(), w.App)
		return err == nil && info.Kind == broker.CredentialSecret
	})
}

// DeleteCredential removes the stored credential; the tokens it got are
// served until they expire, and then the app's tenants have no
// credential. Nothing is sent to Entra ID after the delete.
func TestDeleteCredential(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 2)
	h := newCredHarness(t, w, broker.Options{})
	h.b.Start()
	h.advance(time.Second)
	tok, err := h.get("tenant0", 0)
	if err != nil {
		t.Fatal(err)
	}
	sent := w.IdP.TotalTokenRequests()
	info, err := h.b.DeleteCredential(context.Background(), w.App)
	if err != nil || info.Kind != broker.CredentialSecret || info.App != w.App {
		t.Fatalf("DeleteCredential: %+v, %v", info, err)
	}
	if _, err := h.store.Get(context.Background(), w.ClientID); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("the store still holds the credential: %v", err)
	}
	if got, err := h.get("tenant0", 0); err != nil || got.AccessToken != tok.AccessToken {
		t.Errorf("the cached token is not served after the delete: %v", err)
	}
	h.advance(2 * time.Hour)
	for _, st := range h.b.ListTenants() {
		wantState(t, st, broker.StateNoCredential, "no credential stored for app partner", "brokerctl credential set --app partner")
	}
	_, err = h.get("tenant1", 0)
	wantError(t, err, broker.KindFailedPrecondition, "no credential stored for app partner")
	if got := w.IdP.TotalTokenRequests(); got != sent {
		t.Errorf("%d token requests after the credential was deleted", got-sent)
	}
	_, err = h.b.DeleteCredential(context.Background(), w.App)
	wantError(t, err, broker.KindNotFound, "no credential of app partner is stored")
}

// DeleteCredential refuses a read-only keystore and an app with an
// assertion file, before touching anything.
func TestDeleteCredentialRefused(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	w.AddApp("federated", "0c0c0c0c-0000-4000-8000-00000000c003", "unused-secret-Q~0123456789")
	dir := t.TempDir()
	w.Apps[1].Extra = []string{`assertion_file = "` + filepath.Join(dir, "token") + `"`}
	if err := os.WriteFile(filepath.Join(dir, w.ClientID), []byte(w.Secret), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := keystore.NewSystemd(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := newCredHarness(t, w, broker.Options{Store: st})
	_, err = h.b.DeleteCredential(context.Background(), w.App)
	wantError(t, err, broker.KindFailedPrecondition, "cannot delete credentials from the systemd keystore", "read-only")
	if _, err := os.Stat(filepath.Join(dir, w.ClientID)); err != nil {
		t.Errorf("the credential file: %v", err)
	}
	_, err = h.b.DeleteCredential(context.Background(), "federated")
	wantError(t, err, broker.KindFailedPrecondition, "app federated authenticates with the federated assertion in", "assertion_file")
	_, _, err = h.b.SetCredential(context.Background(), broker.SetRequest{App: "federated", Kind: keystore.KindSecret, Value: keystore.NewSecret("x")})
	wantError(t, err, broker.KindFailedPrecondition, "assertion_file")
}

// A GetCredential whose keystore read is overtaken by a SetCredential
// answers with the new credential, not an error about the change.
func TestGetCredentialDuringSet(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	h := newCredHarness(t, w, broker.Options{}) // not started: nothing read yet
	release := h.store.HoldGets(w.ClientID)
	defer release()
	type answer struct {
		info broker.CredentialInfo
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		info, err := h.b.GetCredential(context.Background(), w.App)
		answered <- answer{info, err}
	}()
	brokertest.WaitFor(t, "GetCredential's keystore read", func() bool { return h.store.Gets() == 1 })
	now := h.clk.Now()
	cert, pemData := newCert(t, now, now.Add(100*24*time.Hour))
	w.IdP.AddCertificate(w.ClientID, cert)
	if _, _, err := setCert(h, w.App, pemData); err != nil {
		t.Fatal(err)
	}
	r := <-answered
	if r.err != nil || r.info.ThumbprintSHA1 != entratest.Thumbprint(cert) {
		t.Errorf("GetCredential during SetCredential: %+v, %v", r.info, r.err)
	}
}

// lateDeleteStore's first Delete never answers in time, and deletes once
// late is closed, as an abandoned keyring call can.
type lateDeleteStore struct {
	*brokertest.Store
	late  chan struct{}
	first atomic.Bool
}

func (s *lateDeleteStore) Delete(ctx context.Context, account string) error {
	if !s.first.CompareAndSwap(false, true) {
		return s.Store.Delete(ctx, account)
	}
	go func() {
		<-s.late
		s.Store.Delete(context.Background(), account)
	}()
	<-ctx.Done()
	return fmt.Errorf("%w: test store: no answer: %w", keystore.ErrUnavailable, ctx.Err())
}

// A delete whose answer is lost may still take effect: DeleteCredential
// says the outcome is unknown and how to settle it, not that nothing was
// deleted; deleting again settles it.
func TestDeleteCredentialOutcomeUnknown(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	st := &lateDeleteStore{Store: w.Store(t), late: make(chan struct{})}
	h := newCredHarness(t, w, broker.Options{Store: st})
	h.b.Start()
	h.advance(time.Second)
	_, err := h.b.DeleteCredential(context.Background(), w.App)
	wantError(t, err, broker.KindOutcomeUnknown, "may or may not be deleted", "brokerctl credential delete --app partner")
	if !strings.Contains(err.Error(), "did not answer in time") {
		t.Errorf("the error does not say why: %v", err)
	}
	close(st.late)
	brokertest.WaitFor(t, "the abandoned delete", func() bool {
		_, err := st.Store.Get(context.Background(), w.ClientID)
		return errors.Is(err, keystore.ErrNotFound)
	})
	if _, err := h.b.DeleteCredential(context.Background(), w.App); err != nil {
		t.Errorf("deleting again: %v", err)
	}
}
