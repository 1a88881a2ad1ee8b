package main_test

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// What Entra ID sends is input, end to end: a 200 without expires_in, a
// 32 MiB reply and a 2 MiB "token" in valid JSON, each for its own tenant.
// brokerd refuses them (brokerctl get fails, UNAVAILABLE, naming the
// cause), its peak memory stays within a few MiB of a healthy run's, its
// log stays small, `brokerctl tenants` keeps working for every tenant, and no token
// appears in any output, listing or log line.
func TestIdPReplyIsInput(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	s := newSession(t)
	w := newConfigWorld(t, s, "memory", "0d0d0d0d-0000-4000-8000-00000000d001")
	// northwind, first by name, stays healthy: credential set verifies
	// the secret with it.
	faults := map[string]*entratest.Fault{
		"woodgrove": {ExpiresIn: new(-1)},
		"xl-body":   {PadBody: 32 * mib},
		"xl-token":  {TokenSize: 2 * mib},
	}
	for i, name := range []string{"xl-body", "xl-token"} {
		w.tenants[name] = fmt.Sprintf("30303030-0000-4000-8000-00000000b00%d", i)
		w.AddTenant(name, w.tenants[name], "partner", true)
	}
	w.write(t)

	// The peak RSS of a healthy run is the yardstick: every tenant READY,
	// a few gets and listings.
	p := w.start(s)
	s.ctl(w.secret, "credential", "set", "--app", "partner").wantExit(t, 0)
	ready := map[string]brokerv1.TenantState{}
	for name := range w.tenants {
		ready[name] = brokerv1.TenantState_TENANT_STATE_READY
	}
	s.waitStates(ready)
	for name := range w.tenants {
		s.get(name)
	}
	healthy := vmHWM(t, p.cmd.Process.Pid)
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("brokerd exited %d after SIGTERM, want 0", code)
	}
	healthyLog := len(p.stderr.String())

	for name, f := range faults {
		w.idp.SetFault(w.tenants[name], f)
	}
	p = w.start(s)
	s.ctl(w.secret, "credential", "set", "--app", "partner").wantExit(t, 0)
	list := s.waitStates(map[string]brokerv1.TenantState{
		"northwind": brokerv1.TenantState_TENANT_STATE_READY,
		"woodgrove": brokerv1.TenantState_TENANT_STATE_FAILED,
		"xl-body":   brokerv1.TenantState_TENANT_STATE_FAILED,
		"xl-token":  brokerv1.TenantState_TENANT_STATE_FAILED,
	})
	want := map[string]string{
		"woodgrove": "expires_in is missing or not a number",
		"xl-body":   "is larger than 64 KiB; refused",
		"xl-token":  "is larger than 64 KiB; refused",
	}
	for name, msg := range want {
		if e := list[name].GetLastError(); !strings.Contains(e, msg) {
			t.Errorf("%s: last error %q lacks %q", name, e, msg)
		}
		s.ctl("", "get", "--tenant", name).wantExit(t, 6, "brokerctl: Unavailable: ", msg)
	}
	// A few more attempts each, with backoff.
	for name := range want {
		n := w.idp.TokenRequests(w.tenants[name])
		waitIdP(t, w.idp, w.tenants[name], n+1)
	}
	wantTenant(t, s.get("northwind"), w.tenants["northwind"])

	faulty := vmHWM(t, p.cmd.Process.Pid)
	t.Logf("brokerd peak RSS (VmHWM): %d KiB in a healthy run, %d KiB in a run with the faulty replies (%+d KiB); the 32 MiB reply was sent %d times, the 2 MiB token %d times",
		healthy>>10, faulty>>10, (faulty-healthy)>>10, w.idp.TokenRequests(w.tenants["xl-body"]), w.idp.TokenRequests(w.tenants["xl-token"]))
	if faulty-healthy > 8*mib {
		t.Errorf("brokerd's peak RSS is %d KiB over a healthy run's after reading a 32 MiB reply and a 2 MiB token, want well under 8 MiB", (faulty-healthy)>>10)
	}

	// tenants works, for every tenant, in both formats, and stays small.
	table := s.ctl("", "tenants")
	table.wantExit(t, 0)
	js := s.ctl("", "tenants", "--output", "json")
	js.wantExit(t, 0)
	for name := range w.tenants {
		if !strings.Contains(table.stdout, name) || !strings.Contains(js.stdout, `"`+name+`"`) {
			t.Errorf("tenant %s is missing from the listing:\n%s", name, table.stdout)
		}
	}
	if len(table.stdout) > 4096 || len(js.stdout) > 8192 {
		t.Errorf("tenants prints %d bytes (table) and %d (json) for %d tenants", len(table.stdout), len(js.stdout), len(w.tenants))
	}

	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("brokerd exited %d after SIGTERM, want 0", code)
	}
	log := p.stderr.String()
	t.Logf("brokerd's log: %d bytes in %d lines (%d bytes in the healthy run)", len(log), strings.Count(log, "\n"), healthyLog)
	if len(log) > 64<<10 {
		t.Errorf("brokerd logged %d bytes", len(log))
	}
	issued := w.idp.Issued()
	if len(issued) < 3 {
		t.Fatalf("the fake Entra ID issued %d tokens: the faults were not exercised", len(issued))
	}
	s.checkNoLeaks([]string{w.secret}, issued)
	if strings.Contains(log, strings.Repeat("x", 64)) {
		t.Error("brokerd's log quotes the padded reply")
	}
}

// vmHWM is the peak resident set size of process pid, in bytes.
func vmHWM(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status (%v)", pid, sc.Err())
	return 0
}

// waitIdP waits until the fake Entra ID has had n token requests for the
// tenant.
func waitIdP(t *testing.T, idp *entratest.Server, tenant string, n int) {
	t.Helper()
	brokertest.WaitFor(t, fmt.Sprintf("%d token requests for tenant %s", n, tenant), func() bool { return idp.TokenRequests(tenant) >= n })
}
