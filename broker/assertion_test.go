package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// An app with assertion_file authenticates with the federated assertion
// in the file, read again for every token request: a replaced file's new
// assertion is the one sent. An expired assertion or a missing file fails
// the tenant, naming the file (and the assertion's exp), without a
// request to Entra ID; a good file again brings the tenant back.
func TestAssertionFile(t *testing.T) {
	t.Parallel()
	const subject = "system:serviceaccount:tokens:brokerd"
	w := brokertest.NewWorld(t, 0)
	fed := w.AddApp("federated", "0c0c0c0c-0000-4000-8000-00000000c003", "unused-secret-Q~0123456789")
	w.AddTenant("fedtenant", brokertest.TenantID(0), "federated", true)
	iss, err := entratest.NewIssuer("")
	if err != nil {
		t.Fatal(err)
	}
	w.IdP.AddFederatedCredential(fed.ClientID, iss.Credential(subject))
	w.IdP.RemoveSecret(fed.ClientID)
	path := filepath.Join(t.TempDir(), "token")
	w.Apps[1].Extra = []string{`assertion_file = "` + path + `"`}
	write := func(assertion string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(assertion+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sign := func() string { return iss.Sign(subject, entratest.DefaultFederatedAudience, 24*time.Hour) }

	first := sign()
	write(first)
	h := newCredHarness(t, w, broker.Options{})
	h.b.Start()
	h.advance(time.Second)
	wantState(t, h.status("fedtenant"), broker.StateReady)
	if a := lastAuth(t, w, 0); a.Method != "federated" || a.Assertion != first || a.Subject != subject {
		t.Errorf("first token: %+v", a)
	}
	info, err := h.b.GetCredential(context.Background(), "federated")
	if err != nil || info.Kind != broker.CredentialAssertionFile || info.AssertionFile != path || info.Keystore != "" {
		t.Errorf("GetCredential: %+v, %v", info, err)
	}

	second := sign()
	write(second)
	h.advance(35 * time.Minute)
	if _, err := h.get("fedtenant", 30*time.Minute); err != nil {
		t.Fatal(err)
	}
	if a := lastAuth(t, w, 0); a.Assertion != second {
		t.Error("the replaced file's assertion was not the one sent")
	}

	sent := w.IdP.TotalTokenRequests()
	exp := h.clk.Now().Add(-time.Minute).Truncate(time.Second)
	write(iss.SignClaims(map[string]any{"iss": iss.Issuer(), "sub": subject, "aud": entratest.DefaultFederatedAudience,
		"exp": exp.Unix(), "jti": "expired"}))
	h.advance(2 * time.Hour)
	wantState(t, h.status("fedtenant"), broker.StateFailed, "app federated", path, "expired at "+exp.UTC().Format(time.RFC3339))
	_, err = h.get("fedtenant", 0)
	wantError(t, err, broker.KindFailedPrecondition, path, "expired at")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	h.advance(10 * time.Minute)
	wantState(t, h.status("fedtenant"), broker.StateFailed, path, "does not exist")
	_, err = h.get("fedtenant", 0)
	wantError(t, err, broker.KindFailedPrecondition, path, "does not exist")
	if got := w.IdP.TotalTokenRequests(); got != sent {
		t.Errorf("%d token requests without a usable assertion", got-sent)
	}

	// A FIFO nobody writes to is refused at once: it neither hangs the
	// acquisition nor, later, Close.
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	h.advance(10 * time.Minute)
	wantState(t, h.status("fedtenant"), broker.StateFailed, path, "not a regular file")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}

	fixed := sign()
	write(fixed)
	h.advance(10 * time.Minute)
	wantState(t, h.status("fedtenant"), broker.StateReady)
	if a := lastAuth(t, w, 0); a.Assertion != fixed {
		t.Error("the fixed file's assertion was not the one sent")
	}
	noLeak(t, "the log", h.logs.String(), w.IdP.Assertions()...)
}
