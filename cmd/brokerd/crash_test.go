package main_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os/exec"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// kill -9 while a refresh and then a credential change are in flight at
// the IdP: each time a restarted brokerd serves again with the credential
// intact in the keyring (the old one, since the change was never verified).
func TestKillDuringRefreshAndCredentialChange(t *testing.T) {
	t.Parallel()
	tool := requireSecretService(t)
	s := newSession(t)
	clientID := fmt.Sprintf("%08x-0000-4000-8000-%012x", mrand.Uint32(), mrand.Uint64()&0xffffffffffff)
	t.Cleanup(func() { exec.Command(tool, "clear", "service", "tokenbroker", "username", clientID).Run() })
	w := newConfigWorld(t, s, "keyring", clientID)
	// 6-second tokens: brokerd refreshes each 2.4 to 3 s after issue.
	w.idp.SetLifetime(6 * time.Second)

	get := func(tenant string) {
		t.Helper()
		r := s.ctl("", "get", "--tenant", tenant, "--min-valid", "1s")
		r.wantExit(t, 0)
	}
	keyringHolds := func(want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		out, err := exec.CommandContext(ctx, tool, "lookup", "service", "tokenbroker", "username", clientID).Output()
		if err != nil || storedSecret(out) != want {
			t.Fatalf("the keyring does not hold the expected secret (%d bytes, %v)", len(out), err)
		}
	}
	// hang holds every token request at the IdP and waits until both
	// tenants' refreshes are there.
	hang := func() {
		t.Helper()
		n, wg := w.idp.TokenRequests(w.tenants["northwind"]), w.idp.TokenRequests(w.tenants["woodgrove"])
		w.idp.SetFault("", &entratest.Fault{Delay: time.Minute})
		brokertest.WaitFor(t, "both refreshes in flight", func() bool {
			return w.idp.TokenRequests(w.tenants["northwind"]) > n && w.idp.TokenRequests(w.tenants["woodgrove"]) > wg
		})
	}
	kill9 := func(p *proc) {
		t.Helper()
		if err := p.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != -1 {
			t.Fatalf("brokerd exited %d, want killed", code)
		}
	}

	p := w.start(s)
	s.ctl(w.secret, "credential", "set", "--app", "partner").wantExit(t, 0)
	get("northwind")
	get("woodgrove")

	// 1. Mid-refresh.
	hang()
	kill9(p)
	w.idp.SetFault("", nil)
	p = w.start(s)
	keyringHolds(w.secret)
	get("northwind")
	get("woodgrove")

	// 2. Mid-credential-change: the new secret is being verified when
	// brokerd dies. The old one must still be in the keyring.
	hang()
	// northwind's refresh is already in flight, so its next request is
	// the verification (which tries the app's first tenant).
	n := w.idp.TokenRequests(w.tenants["northwind"])
	done := make(chan result)
	go func() {
		done <- s.ctl("new-secret-Q~never-verified-0000000000", "credential", "set", "--app", "partner")
	}()
	brokertest.WaitFor(t, "the verification request at the IdP", func() bool {
		return w.idp.TokenRequests(w.tenants["northwind"]) > n
	})
	kill9(p)
	if r := <-done; r.code != 6 {
		t.Errorf("credential set while brokerd was killed: %v; want exit 6 (unavailable)", r)
	}
	w.idp.SetFault("", nil)
	w.start(s)
	keyringHolds(w.secret)
	get("northwind")
	get("woodgrove")
	s.checkNoLeaks([]string{w.secret, "new-secret-Q~never-verified-0000000000"}, w.idp.Issued())
}
