//go:build long

package main_test

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// A brokerd stopped (SIGSTOP) past every refresh catches up paced by
// prefetch_rate when it resumes, instead of sending every overdue
// request at once. 40 tenants, 6-second tokens, prefetch_rate 10: the
// catch-up takes about 3.9 s; unpaced, it would take a fraction of a
// second (max_idp_requests is 32). A slow machine can only stretch it, so
// the test asserts the lower bound.
func TestLongStoppedDaemonCatchesUpPaced(t *testing.T) {
	t.Parallel()
	const tenants, rate = 40, 10
	s := newSession(t)
	w := newConfigWorld(t, s, "memory", "0f0f0f0f-0000-4000-8000-00000000f001")
	for i := 2; i < tenants; i++ {
		w.AddTenant(fmt.Sprintf("extra%d", i), fmt.Sprintf("30303030-0000-4000-8000-%012x", i), "partner", true)
	}
	w.write(t, fmt.Sprintf("prefetch_rate = %d", rate), `min_valid = "1s"`)
	w.idp.SetLifetime(6 * time.Second)
	p := w.start(s)
	s.ctl(w.secret, "credential", "set", "--app", "partner").wantExit(t, 0)
	ready := map[string]brokerv1.TenantState{}
	for _, tn := range w.Tenants {
		ready[tn.Name] = brokerv1.TenantState_TENANT_STATE_READY
	}
	s.waitStates(ready)

	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second) // every token expires, every refresh is overdue
	before := w.idp.TotalTokenRequests()
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	var first, last time.Time
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		n := w.idp.TotalTokenRequests() - before
		if n > 0 && first.IsZero() {
			first = time.Now()
		}
		if n >= tenants {
			last = time.Now()
			break
		}
	}
	if last.IsZero() {
		t.Fatalf("only %d token requests in 30 s after SIGCONT, want %d", w.idp.TotalTokenRequests()-before, tenants)
	}
	span := last.Sub(first)
	t.Logf("%d overdue refreshes took %v after SIGCONT (prefetch_rate %d/s: about %v)", tenants, span, rate, time.Duration(tenants-1)*time.Second/rate)
	if span < 2*time.Second {
		t.Errorf("%d overdue refreshes went out within %v: not paced by prefetch_rate %d/s", tenants, span, rate)
	}
	s.waitStates(ready)
}
