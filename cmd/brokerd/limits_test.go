package main_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/testuser"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// A uid on an allow list that is neither root nor nobody.
var allowedCaller = &syscall.Credential{Uid: 4242, Gid: nogroupGID, Groups: []uint32{}}

// openFDs and rssKiB read a process's open descriptors and resident size.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// flooder is testdata/flood running as nobody, holding its connections
// until stopped.
type flooder struct {
	cmd                      *exec.Cmd
	stdin                    interface{ Close() error }
	kept, refused, undecided int
}

func startFlood(t *testing.T, socket string, n int) *flooder {
	t.Helper()
	f := &flooder{cmd: exec.Command(bin("flood"), socket, strconv.Itoa(n))}
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	f.cmd.Stderr = os.Stderr
	stdin, err := f.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	f.stdin = stdin
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.cmd.Process.Kill(); f.cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if _, err2 := fmt.Sscanf(line, "kept %d refused %d undecided %d", &f.kept, &f.refused, &f.undecided); err != nil || err2 != nil {
		t.Fatalf("flood: %q, %v, %v", line, err, err2)
	}
	return f
}

// stop closes the flooder's connections and waits for it to exit.
func (f *flooder) stop(t *testing.T) {
	t.Helper()
	f.stdin.Close()
	if err := f.cmd.Wait(); err != nil {
		t.Fatalf("flood: %v", err)
	}
}

// A uid on no allow list opening hundreds of connections gets
// limits.max_connections_per_uid of them; the rest are closed at once,
// with one log line. An allowed caller keeps getting tokens throughout,
// and once the flooder is gone its connections no longer count.
func TestConnectionFlood(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, "allow_uids = [4242]", nil)
	d := w.startShared(s)
	pid := d.cmd.Process.Pid
	s.ctlAs(allowedCaller, s.socket, "", "get", "--tenant", "northwind").wantExit(t, 0)
	fds0, rss0 := openFDs(t, pid), rssKiB(t, pid)

	const flood = 400
	f := startFlood(t, s.socket, flood)
	fds, rss := openFDs(t, pid), rssKiB(t, pid)
	t.Logf("brokerd with %d connections from nobody: %d fds (%d before), VmRSS %d KiB (%d before)", flood, fds, fds0, rss, rss0)
	if f.kept != 64 || f.refused != flood-64 || f.undecided != 0 {
		t.Errorf("flood of %d: kept %d, refused %d, undecided %d; want 64 kept (limits.max_connections_per_uid) and the rest refused",
			flood, f.kept, f.refused, f.undecided)
	}
	if fds > fds0+64+8 {
		t.Errorf("brokerd holds %d descriptors with the flood, %d before: more than the 64 the flooder may hold", fds, fds0)
	}
	for range 3 {
		s.ctlAs(allowedCaller, s.socket, "", "get", "--tenant", "woodgrove").wantExit(t, 0)
	}
	// While it holds its 64, each new connection of nobody's is refused.
	if p := startFlood(t, s.socket, 1); p.refused != 1 {
		t.Errorf("one more connection: kept %d, refused %d; want it refused", p.kept, p.refused)
	} else {
		p.stop(t)
	}
	refusedLine := "connection refused: uid 65534 is over limits.max_connections_per_uid (64)"
	if n := strings.Count(d.stderr.String(), refusedLine); n != 1 {
		t.Errorf("%d lines %q, want 1:\n%s", n, refusedLine, d.stderr.String())
	}

	f.stop(t)
	brokertest.WaitFor(t, "brokerd to close the flooder's connections", func() bool { return openFDs(t, pid) <= fds0+2 })
	f = startFlood(t, s.socket, 64)
	if f.kept != 64 {
		t.Errorf("after the flood: kept %d of 64, refused %d; the closed connections still count", f.kept, f.refused)
	}
	f.stop(t)

	// Stopping reports the refusals the rate limit held back: none is lost.
	if code := d.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("brokerd exited %d", code)
	}
	logged := strings.Count(d.stderr.String(), "connection refused: uid 65534 ")
	for _, m := range regexp.MustCompile(`refused (\d+) more connections from uid 65534:`).FindAllStringSubmatch(d.stderr.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		logged += n
	}
	if logged != flood-64+1 {
		t.Errorf("the log accounts for %d refused connections, want %d:\n%s", logged, flood-64+1, d.stderr.String())
	}
}

// Requests over [limits] are refused before anything is logged, cached or
// sent: INVALID_ARGUMENT naming the limit (RESOURCE_EXHAUSTED for a
// message over limits.max_request_bytes), at most one log line each,
// without the value, and no request to Entra ID. They go through the raw
// gRPC client, so no client-side check hides the server's.
func TestRequestLimits(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	w := newConfigWorld(t, s, "memory", "0d0d0d0d-0000-4000-8000-00000000d011")
	d := w.start(s)
	s.ctl(w.secret, "credential", "set", "--app", "partner").wantExit(t, 0)
	s.get("northwind")
	s.get("woodgrove")

	conn, err := grpc.NewClient("unix://"+s.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := brokerv1.NewBrokerServiceClient(conn)
	graph := "https://graph.microsoft.com/.default"
	longScope := "https://" + strings.Repeat("a", 600) + ".example/.default"
	tests := []struct {
		name  string
		req   *brokerv1.GetTokenRequest
		code  codes.Code
		msg   string
		value string // must appear nowhere in the log
	}{
		{"oversized tenant", &brokerv1.GetTokenRequest{Tenant: strings.Repeat("T", 1000)},
			codes.InvalidArgument, "tenant name of 1000 bytes is longer than limits.max_tenant_bytes (256)", strings.Repeat("T", 300)},
		{"too many scopes", &brokerv1.GetTokenRequest{Tenant: "northwind", Scopes: []string{graph, graph, graph, graph, graph, graph, graph, graph, graph}},
			codes.InvalidArgument, "9 scopes are more than limits.max_scopes (8)", ""},
		{"over-long scope", &brokerv1.GetTokenRequest{Tenant: "northwind", Scopes: []string{longScope}},
			codes.InvalidArgument, "longer than limits.max_scope_bytes (512)", strings.Repeat("a", 300)},
		{"message over max_request_bytes", &brokerv1.GetTokenRequest{Tenant: strings.Repeat("M", 1<<20)},
			codes.ResourceExhausted, "", strings.Repeat("M", 300)},
	}
	idp := w.idp.TotalTokenRequests()
	// brokerd's stderr is copied as it comes: the lines of the calls above
	// must be in before each case takes its "before".
	brokertest.WaitFor(t, "the audit line of the last get", func() bool {
		return strings.Contains(d.stderr.String(), "rpc=GetToken tenant=woodgrove")
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := d.stderr.String()
			_, err := c.GetToken(context.Background(), tt.req)
			if st, _ := status.FromError(err); st.Code() != tt.code || !strings.Contains(st.Message(), tt.msg) {
				t.Errorf("err = %v; want %v %q", err, tt.code, tt.msg)
			}
			if tt.code == codes.InvalidArgument {
				// Refused by the authorizer, which audits it (without the
				// value); wait for that line before counting.
				brokertest.WaitFor(t, "the audit line of the refusal", func() bool {
					return strings.Contains(d.stderr.String()[len(before):], tt.msg)
				})
			}
			after := d.stderr.String()
			if n := strings.Count(after[len(before):], "\n"); n > 1 {
				t.Errorf("brokerd logged %d lines, want at most 1:\n%s", n, after[len(before):])
			}
			if tt.value != "" && strings.Contains(after, tt.value) {
				t.Error("brokerd's log holds the value")
			}
		})
	}
	if n := w.idp.TotalTokenRequests(); n != idp {
		t.Errorf("%d token requests for requests over the limits, want none", n-idp)
	}
}

// For a caller that is not an admin, an unknown tenant and a tenant it may
// not use give the same error: it learns nothing about which tenants exist,
// even when the top-level list allows it. Root gets NOT_FOUND with the
// configured tenants.
func TestUnknownTenantLikeForbidden(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, "allow_uids = [65534]", map[string]string{"woodgrove": "allow_uids = [4242]"})
	w.startShared(s)
	s.ctlAs(nobody, s.socket, "", "get", "--tenant", "northwind").wantExit(t, 0)

	for _, pair := range [][2]string{
		{"woodgrove", "no-such-tenant"},
		{w.tenants["woodgrove"], "30303030-0000-4000-8000-00000000a003"},
		{"woodgrove.onmicrosoft.com", "fabrikam.onmicrosoft.com"},
	} {
		forbidden, unknown := pair[0], pair[1]
		f := s.ctlAs(nobody, s.socket, "", "get", "--tenant", forbidden)
		f.wantExit(t, 4, "PermissionDenied", fmt.Sprintf("uid 65534 may not get tokens for tenant %q", forbidden))
		u := s.ctlAs(nobody, s.socket, "", "get", "--tenant", unknown)
		u.wantExit(t, 4)
		if got := strings.ReplaceAll(u.stderr, unknown, forbidden); got != f.stderr {
			t.Errorf("unknown tenant %s and forbidden tenant %s give different errors:\n%s%s", unknown, forbidden, u.stderr, f.stderr)
		}
	}
	s.ctl("", "get", "--tenant", "no-such-tenant").wantExit(t, 3, "NotFound", `tenant "no-such-tenant" is not configured`, "northwind, woodgrove")
}

// ListTenants hands out no token, so a caller on no list cannot flood the
// audit log by listing over new connections: its lines are held to
// limits.audit_denials_per_minute per uid, and the rest are counted in one
// summary line when brokerd stops. Admins' listings are all logged.
func TestListTenantsAuditRateLimited(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, "[limits]\naudit_denials_per_minute = 3", nil)
	d := w.startShared(s)
	for range 12 {
		r := s.ctlAs(nobody, s.socket, "", "tenants", "--output", "json")
		r.wantExit(t, 0)
		if strings.Contains(r.stdout, "northwind") {
			t.Fatalf("nobody sees a tenant:\n%s", r.stdout)
		}
	}
	for range 2 {
		s.ctl("", "tenants").wantExit(t, 0)
	}
	if code := d.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("brokerd exited %d", code)
	}
	log := d.stderr.String()
	if n := strings.Count(log, "msg=audit rpc=ListTenants tenant=\"\" uid=65534"); n != 3 {
		t.Errorf("%d ListTenants audit lines for uid 65534, want 3:\n%s", n, log)
	}
	if !strings.Contains(log, `msg="9 more ListTenants calls from uid 65534"`) {
		t.Errorf("no summary of the 9 held-back listings:\n%s", log)
	}
	if n := strings.Count(log, "msg=audit rpc=ListTenants tenant=\"\" uid=0"); n != 2 {
		t.Errorf("%d ListTenants audit lines for root, want 2", n)
	}
}
