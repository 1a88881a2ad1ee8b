package broker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
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

	// Start-up, paced: tenant0's acquisition starts partner's keystore
	// read, which hangs; tenant1's joins it; tenant2 (app other) goes on.
	h.b.Start()
	brokertest.WaitFor(t, "partner's keystore read", func() bool { return h.store.Gets() == 1 })
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

	if _, err := h.b.SetCredential(context.Background(), "partner", keystore.NewSecret(w.Secret)); err != nil {
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
	_, err = h.b.SetCredential(context.Background(), h.w.App, keystore.NewSecret(rotated))
	wantError(t, err, broker.KindOutcomeUnknown, "may or may not be stored", "brokerctl tenants")
	if strings.Contains(err.Error(), rotated) {
		t.Error("the error contains the secret")
	}
	h.settle()
	if tok, err := h.get("tenant0", 0); err != nil || tok.AccessToken != first.AccessToken {
		t.Fatalf("the cached token is not served after the lost write: %v", err)
	}

	release() // the abandoned write completes
	brokertest.WaitFor(t, "the abandoned write", func() bool {
		s, err := h.store.Store.Get(context.Background(), h.w.ClientID)
		return err == nil && s.Reveal() == rotated
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

	_, err = h.b.SetCredential(context.Background(), w.App, keystore.NewSecret(w.Secret))
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
		wantState(t, st, broker.StateFailed, "unusable", "0 bytes", "brokerctl credential set --app partner")
	}
	if got := w.IdP.TotalTokenRequests(); got != 0 {
		t.Errorf("%d token requests with an empty secret", got)
	}
	if n := strings.Count(h.logs.String(), `msg="reading the credential failed"`); n < 6 || n > 7 {
		t.Errorf("the keystore was read %d times in an hour, want one read every ten minutes", n)
	}
}
