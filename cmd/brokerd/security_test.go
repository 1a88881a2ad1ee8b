package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/testuser"
)

// The unprivileged second user of the access tests: Debian's nobody and
// nogroup, plus group staff for supplementary-group checks.
const (
	nobodyUID  = testuser.Nobody
	nogroupGID = testuser.Nogroup
	staffGID   = 50
)

var nobody = &syscall.Credential{Uid: nobodyUID, Gid: nogroupGID, Groups: []uint32{}}

// sharedWorld is a configWorld whose brokerd runs as root and shares its
// socket with group nogroup, so nobody can connect and brokerd's own checks
// decide. top and perTenant are extra TOML lines (allow lists).
func sharedWorld(t *testing.T, s *session, top string, perTenant map[string]string) *configWorld {
	t.Helper()
	w := newConfigWorld(t, s, "memory", "0d0d0d0d-0000-4000-8000-00000000d001")
	for i, tn := range w.Tenants {
		if extra := perTenant[tn.Name]; extra != "" {
			w.Tenants[i].Extra = []string{extra}
		}
	}
	w.write(t, top)
	// nobody must be able to reach the socket's directory.
	if err := os.Chmod(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *configWorld) startShared(s *session, extra ...string) *proc {
	s.t.Helper()
	args := append([]string{"--config", w.config, "--socket", s.socket, "--socket-group", "nogroup"}, extra...)
	p := s.brokerd(w.env, args...)
	p.waitServing(s.t)
	s.ctl(w.secret, "credential", "set", "--app", "partner").wantExit(s.t, 0)
	return p
}

// auditLine finds the audit line of brokerctl run r for rpc.
func auditLine(t *testing.T, p *proc, r result, rpc string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^.*msg=audit rpc=` + rpc + ` .* pid=` + fmt.Sprint(r.pid) + ` .*$`)
	var line string
	brokertest.WaitFor(t, "the audit line of "+r.String(), func() bool {
		line = re.FindString(p.stderr.String())
		return line != ""
	})
	return line
}

func TestSecondUserDeniedByDefault(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, "", nil)
	d := w.startShared(s)

	r := s.ctlAs(nobody, s.socket, "", "get", "--tenant", "northwind")
	r.wantExit(t, 4, "PermissionDenied", "uid 65534", `"northwind"`)
	line := auditLine(t, d, r, "GetToken")
	for _, want := range []string{"tenant=northwind", "uid=65534", "gid=65534", "allowed=false", "exe=" + bin("brokerctl"), "reason="} {
		if !strings.Contains(line, want) {
			t.Errorf("audit line lacks %q: %s", want, line)
		}
	}

	// A watch is authorized like GetToken, and audited as WatchToken.
	wr := s.ctlAs(nobody, s.socket, "", "get", "--tenant", "northwind", "--watch")
	wr.wantExit(t, 4, "PermissionDenied", "uid 65534", `"northwind"`)
	line = auditLine(t, d, wr, "WatchToken")
	for _, want := range []string{"tenant=northwind", "uid=65534", "allowed=false"} {
		if !strings.Contains(line, want) {
			t.Errorf("audit line lacks %q: %s", want, line)
		}
	}

	// An unknown tenant is denied too: nobody learns which tenants exist.
	s.ctlAs(nobody, s.socket, "", "get", "--tenant", "no-such-tenant").wantExit(t, 4, "uid 65534", `"no-such-tenant"`)
	s.ctlAs(nobody, s.socket, "", "get", "--tenant", "no-such-tenant", "--watch").wantExit(t, 4, "uid 65534", `"no-such-tenant"`)
	// The status lists nothing nobody may use.
	tr := s.ctlAs(nobody, s.socket, "", "tenants", "--output", "json")
	tr.wantExit(t, 0)
	if strings.Contains(tr.stdout, "northwind") || strings.Contains(tr.stdout, "woodgrove") {
		t.Errorf("tenants shows nobody tenants it may not use:\n%s", tr.stdout)
	}
	// Administration is for root and the daemon's uid only.
	s.ctlAs(nobody, s.socket, "stolen-Q~secret", "credential", "set", "--app", "partner").
		wantExit(t, 4, "uid 65534 may not call SetCredential")

	// root (the daemon's uid) is allowed, and audited as such.
	ok := s.ctl("", "get", "--tenant", "northwind")
	ok.wantExit(t, 0)
	line = auditLine(t, d, ok, "GetToken")
	for _, want := range []string{"tenant=northwind", "uid=0", "allowed=true", "reason=root"} {
		if !strings.Contains(line, want) {
			t.Errorf("audit line lacks %q: %s", want, line)
		}
	}
	s.checkNoLeaks([]string{w.secret, "stolen-Q~secret"}, w.idp.Issued())
}

func TestSecondUserAllowLists(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	tests := []struct {
		name      string
		top       string
		perTenant map[string]string
		cred      *syscall.Credential
		allowed   []string
		denied    []string
	}{
		{"uid on one tenant", "", map[string]string{"northwind": "allow_uids = [65534]"}, nobody,
			[]string{"northwind"}, []string{"woodgrove"}},
		{"user name on one tenant", "", map[string]string{"woodgrove": `allow_users = ["nobody"]`}, nobody,
			[]string{"woodgrove"}, []string{"northwind"}},
		{"primary group", "", map[string]string{"northwind": `allow_groups = ["nogroup"]`}, nobody,
			[]string{"northwind"}, []string{"woodgrove"}},
		{"supplementary group", "", map[string]string{"woodgrove": `allow_groups = ["staff"]`},
			&syscall.Credential{Uid: nobodyUID, Gid: nogroupGID, Groups: []uint32{staffGID}},
			[]string{"woodgrove"}, []string{"northwind"}},
		{"top-level default, overridden by a tenant list", `allow_uids = [65534]`, map[string]string{"woodgrove": "allow_uids = [4242]"}, nobody,
			[]string{"northwind"}, []string{"woodgrove"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSession(t)
			w := sharedWorld(t, s, tt.top, tt.perTenant)
			d := w.startShared(s)
			for _, name := range tt.allowed {
				r := s.ctlAs(tt.cred, s.socket, "", "get", "--tenant", name)
				r.wantExit(t, 0)
				wantTenant(t, strings.TrimSuffix(r.stdout, "\n"), w.tenants[name])
				line := auditLine(t, d, r, "GetToken")
				if !strings.Contains(line, "tenant="+name) || !strings.Contains(line, "uid=65534") || !strings.Contains(line, "allowed=true") {
					t.Errorf("audit line: %s", line)
				}
			}
			for _, name := range tt.denied {
				s.ctlAs(tt.cred, s.socket, "", "get", "--tenant", name).wantExit(t, 4, "uid 65534", fmt.Sprintf("%q", name))
			}
			// Being on a list never grants administration.
			s.ctlAs(tt.cred, s.socket, "x-Q~secret", "credential", "set", "--app", "partner").wantExit(t, 4, "SetCredential")
			// tenants shows exactly the allowed tenants.
			tr := s.ctlAs(tt.cred, s.socket, "", "tenants")
			tr.wantExit(t, 0)
			for _, name := range tt.allowed {
				if !strings.Contains(tr.stdout, name) {
					t.Errorf("tenants lacks %s:\n%s", name, tr.stdout)
				}
			}
			for _, name := range tt.denied {
				if strings.Contains(tr.stdout, name) {
					t.Errorf("tenants shows %s:\n%s", name, tr.stdout)
				}
			}
			s.checkNoLeaks([]string{w.secret, "x-Q~secret"}, nil)
		})
	}
}

func TestUnknownAllowListNames(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, `allow_users = ["no-such-user-q"]`, nil)
	p := s.brokerd(w.env, "--config", w.config, "--socket", s.socket)
	if code := p.wait(t); code != 2 || !strings.Contains(p.stderr.String(), `brokerd.toml:3: allow_users: no user "no-such-user-q"`) {
		t.Errorf("exit %d, stderr %s", code, p.stderr.String())
	}
	w = sharedWorld(t, s, "", map[string]string{"woodgrove": `allow_groups = ["no-such-group-q"]`})
	p = s.brokerd(w.env, "--config", w.config, "--socket", s.socket)
	if code := p.wait(t); code != 2 || !strings.Contains(p.stderr.String(), `tenants.woodgrove.allow_groups: no group "no-such-group-q"`) {
		t.Errorf("exit %d, stderr %s", code, p.stderr.String())
	}
	s.ctl("", "--timeout", "1s", "get", "--tenant", "northwind").wantExit(t, 6)
}

func TestSharedSocketMode(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	socket := filepath.Join(s.dir, "run", "brokerd.sock")
	s.brokerd(nil, "--dev", "--socket", socket, "--socket-group", "nogroup").waitServing(t)
	for path, want := range map[string]os.FileMode{socket: os.ModeSocket | 0o660, filepath.Dir(socket): os.ModeDir | 0o750} {
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if got := fi.Mode() & (os.ModeType | os.ModePerm); got != want || st.Gid != nogroupGID || st.Uid != 0 {
			t.Errorf("%s: mode %v uid %d gid %d, want %v uid 0 gid %d", path, got, st.Uid, st.Gid, want, nogroupGID)
		}
	}
	p := s.brokerd(nil, "--dev", "--socket", filepath.Join(s.dir, "b.sock"), "--socket-group", "no-such-group-q")
	if code := p.wait(t); code != 1 || !strings.Contains(p.stderr.String(), `--socket-group: no group "no-such-group-q"`) {
		t.Errorf("unknown --socket-group: exit %d, %s", code, p.stderr.String())
	}
}

// brokerd is not dumpable: a process of the same (unprivileged) user cannot
// read its memory or environment through /proc, while it can read those of
// an ordinary process of that user (the control).
func TestNotDumpable(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	// brokerd itself runs as nobody here, in a directory of its own.
	socket := filepath.Join(nobodyDir(t, s), "brokerd.sock")
	cmd := exec.Command(bin("brokerd"), "--dev", "--socket", socket)
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	var stderr brokertest.LogBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	brokertest.WaitFor(t, "brokerd as nobody serving", func() bool { return strings.Contains(stderr.String(), `msg="brokerd serving"`) })

	control := exec.Command("sleep", "60")
	control.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	if err := control.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { control.Process.Kill(); control.Wait() })

	readAsNobody := func(pid int, file string) error {
		c := exec.Command("head", "-c", "1", fmt.Sprintf("/proc/%d/%s", pid, file))
		c.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := readAsNobody(control.Process.Pid, "environ"); err != nil {
		t.Fatalf("control: nobody cannot read its own sleep's environ (%v); the check below would prove nothing", err)
	}
	for _, f := range []string{"environ", "mem"} {
		if err := readAsNobody(cmd.Process.Pid, f); err == nil || !strings.Contains(err.Error(), "Permission denied") {
			t.Errorf("nobody read /proc/<brokerd>/%s: %v", f, err)
		}
	}
	fi, err := os.Stat(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 0 {
		t.Errorf("/proc/<brokerd>/environ belongs to uid %d; a non-dumpable process's /proc files belong to root", uid)
	}
}

// One full scenario with debug logs: credentials set (a wrong one, then the
// right one), tokens for several tenants, a denied caller, a failing IdP.
// Neither the secrets nor any token issued appear anywhere but in the
// stdout of a successful get.
func TestNoLeaksFullScenario(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, "", nil)
	w.Apps[0].Extra = []string{`allowed_scopes = ["https://api.securitycenter.microsoft.com", "https://graph.microsoft.com"]`}
	w.write(t)
	d := s.brokerd(w.env, "--config", w.config, "--socket", s.socket, "--socket-group", "nogroup", "--log-level", "debug")
	d.waitServing(t)
	const wrong = "wrong-Q~leaktest-0123456789abcdefghij"
	s.ctl(wrong, "credential", "set", "--app", "partner").wantExit(t, 5, "AADSTS7000215")
	s.ctl(w.secret, "credential", "set", "--app", "partner").wantExit(t, 0)
	for _, name := range []string{"northwind", "woodgrove", w.tenants["northwind"], "woodgrove.onmicrosoft.com"} {
		s.get(name)
	}
	s.ctlAs(nobody, s.socket, "", "get", "--tenant", "northwind").wantExit(t, 4)
	s.ctlAs(nobody, s.socket, wrong, "credential", "set", "--app", "partner").wantExit(t, 4)
	before := w.idp.TokenRequests(w.tenants["northwind"])
	s.ctl("", "get", "--tenant", "northwind", "--scope", "https://management.azure.com/.default").
		wantExit(t, 4, "PermissionDenied", `scope "https://management.azure.com/.default" is not allowed`, "apps.partner.allowed_scopes")
	if got := w.idp.TokenRequests(w.tenants["northwind"]); got != before {
		t.Errorf("%d token requests for a scope outside allowed_scopes", got-before)
	}
	w.idp.SetFault("", &entratest.Fault{Status: 503, RetryAfter: "30"})
	s.ctl("", "get", "--tenant", "northwind", "--scope", "https://graph.microsoft.com/.default").wantExit(t, 6, "503")
	s.ctl("", "tenants", "--output", "json").wantExit(t, 0)
	s.ctl("", "tenants").wantExit(t, 0)
	if !strings.Contains(d.stderr.String(), "level=DEBUG") {
		t.Error("no debug logging happened; the scan would be weaker than intended")
	}
	s.checkNoLeaks([]string{w.secret, wrong}, w.idp.Issued())
}
