package main_test

// The trust boundary around the socket and the configuration, with real
// processes of a second user (nobody): brokerctl sends nothing to a daemon
// or a squatter it does not trust, and talks to one it was told to trust;
// brokerd refuses socket paths and configuration files others control.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/testuser"
)

// nobodyDir makes the session's directory 0755 and returns a 0700
// directory in it that belongs to nobody, for a daemon nobody runs.
func nobodyDir(t *testing.T, s *session) string {
	t.Helper()
	if err := os.Chmod(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return mkdirOwned(t, filepath.Join(s.dir, "nb"), 0o700, nobodyUID)
}

// mkdirOwned makes dir with mode, owned by uid.
func mkdirOwned(t *testing.T, dir string, mode os.FileMode, uid int) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, -1); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// squatter is the hostile listener (testdata/squatter) running as nobody.
type squatter struct {
	*proc
	socket string
}

func startSquatter(t *testing.T, socket string) *squatter {
	t.Helper()
	p := startProcAs(t, nobody, childEnv(), bin("squatter"), socket)
	brokertest.WaitFor(t, "the squatter to listen", func() bool {
		if !p.running() {
			t.Fatalf("the squatter exited: %s", p.stderr.String())
		}
		return strings.Contains(p.stdout.String(), "listening")
	})
	return &squatter{proc: p, socket: socket}
}

// connections and reads count what the squatter saw.
func (q *squatter) connections() int { return strings.Count(q.stdout.String(), "\nconn") }
func (q *squatter) reads() int       { return strings.Count(q.stdout.String(), "\nread ") }

// waitClosed waits until the squatter has seen n connections end, so that
// reads counts everything sent on them.
func (q *squatter) waitClosed(t *testing.T, n int) {
	t.Helper()
	brokertest.WaitFor(t, fmt.Sprintf("the squatter to see %d connections closed", n), func() bool {
		return strings.Count(q.stdout.String(), "\nclosed") >= n
	})
}

// A listener squatting on the socket path as nobody gets nothing from
// brokerctl credential set: not a connection when its directory gives it
// away, not a byte when only its uid does.
func TestSquatterGetsNothing(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	const secret = "squatted-Q~0123456789abcdefghijklmnopqrstu"
	// A shared sticky directory, like /tmp: nobody may bind in it.
	if err := os.Chmod(s.dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	q := startSquatter(t, s.socket)
	s.ctl(secret, "credential", "set", "--app", "partner").wantExit(t, 4, "brokerctl: PermissionDenied: ",
		"refusing the brokerd socket "+s.socket, "directory "+s.dir, "mode 1777", "sticky", "a directory of its own")
	if q.connections() != 0 || q.reads() != 0 {
		t.Errorf("the squatter in the sticky directory was reached:\n%s", q.stdout.String())
	}

	// Moved into a directory of root's and given to root, the socket
	// passes every path check; the listener is still nobody's, and only
	// SO_PEERCRED says so.
	safe := mkdirOwned(t, filepath.Join(s.dir, "safe"), 0o755, 0)
	moved := filepath.Join(safe, "brokerd.sock")
	if err := os.Rename(s.socket, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(moved, 0, 0); err != nil {
		t.Fatal(err)
	}
	s.ctlAt(moved, secret, "credential", "set", "--app", "partner").wantExit(t, 4, "brokerctl: PermissionDenied: ",
		"refusing the brokerd socket "+moved, "served by uid 65534 (nobody)", "--expect-uid 65534", "BROKERD_UID=65534")
	// brokerctl has exited: its connection, if it made one, is closed.
	// (Without one, this times out: the uid check was not exercised.)
	q.waitClosed(t, 1)
	if q.reads() != 0 {
		t.Fatalf("brokerctl sent the squatter bytes:\n%s", q.stdout.String())
	}
	if n := q.connections(); n != 1 {
		t.Errorf("the squatter saw %d connections, want 1 (none in the sticky directory)", n)
	}

	// The control: told to trust nobody, brokerctl hands the squatter the
	// secret. Only the uid check above kept it.
	s.ctlAt(moved, secret, "--expect-uid", "65534", "--timeout", "1s", "credential", "set", "--app", "partner").wantExit(t, 6, "DeadlineExceeded")
	brokertest.WaitFor(t, "the secret to reach the trusted squatter", func() bool { return strings.Contains(q.stdout.String(), secret) })
	// No brokerctl output carries it.
	s.checkNoLeaks([]string{secret}, nil)
}

// A brokerd run by another unprivileged user is refused until brokerctl is
// told to trust that user, by --expect-uid or BROKERD_UID.
func TestForeignDaemonNeedsExpectUID(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	socket := filepath.Join(nobodyDir(t, s), "brokerd.sock")
	s.socket = socket
	d := s.track(startProcAs(t, nobody, childEnv(), bin("brokerd"), "--dev", "--socket", socket))
	d.waitServing(t)

	s.ctlAt(socket, "", "tenants").wantExit(t, 4, "brokerctl: PermissionDenied: ", "refusing the brokerd socket "+socket,
		"directory "+filepath.Dir(socket), "uid 65534 (nobody)", "--expect-uid 65534", "BROKERD_UID=65534")
	if strings.Contains(d.stderr.String(), "msg=audit") {
		t.Errorf("the refused call reached brokerd:\n%s", d.stderr.String())
	}

	s.ctlAt(socket, "", "--expect-uid", "65534", "tenants").wantExit(t, 0)
	s.ctlAt(socket, devSecret, "--expect-uid", "nobody", "credential", "set", "--app", "partner").wantExit(t, 0)
	s.ctlEnv = []string{"BROKERD_UID=nobody"}
	wantTenant(t, s.get("contoso"), contosoID)
	s.ctlEnv = []string{"BROKERD_UID=4242"}
	s.ctlAt(socket, "", "tenants").wantExit(t, 4, "uid 65534 (nobody)")
	s.checkNoLeaks([]string{devSecret}, nil)
}

// The system service's layout: a directory of the service user's in a
// chain only root controls (/run/brokerd in /run). brokerctl trusts the
// daemon that directory's owner runs without being told.
func TestProtectedSocketDirectory(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	run, err := os.MkdirTemp("/run", "tb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	if err := os.Chmod(run, 0o755); err != nil {
		t.Fatal(err)
	}
	s := newSession(t)
	s.socket = filepath.Join(mkdirOwned(t, filepath.Join(run, "brokerd"), 0o750, nobodyUID), "brokerd.sock")
	d := s.track(startProcAs(t, nobody, childEnv(), bin("brokerd"), "--dev", "--socket", s.socket))
	d.waitServing(t)
	wantTenant(t, s.get("contoso"), contosoID)
	s.ctl("", "tenants").wantExit(t, 0)

	// Another user's listener in that directory is refused: the rule
	// trusts the directory's owner, no one else. Bound elsewhere by uid
	// 4242 and moved in by root, its file is nobody's like the
	// directory; only its uid differs.
	if err := os.Chmod(s.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	other := &syscall.Credential{Uid: 4242, Gid: nogroupGID, Groups: []uint32{}}
	bound := filepath.Join(mkdirOwned(t, filepath.Join(s.dir, "q"), 0o700, 4242), "q.sock")
	q := &squatter{proc: startProcAs(t, other, childEnv(), bin("squatter"), bound), socket: bound}
	brokertest.WaitFor(t, "the squatter to listen", func() bool { return strings.Contains(q.stdout.String(), "listening") })
	third := filepath.Join(filepath.Dir(s.socket), "third.sock")
	if err := os.Rename(bound, third); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(third, nobodyUID, -1); err != nil {
		t.Fatal(err)
	}
	s.ctlAt(third, "", "tenants").wantExit(t, 4, "brokerctl: PermissionDenied: ", "served by uid 4242")
	q.waitClosed(t, 1)
	if q.reads() != 0 {
		t.Errorf("brokerctl sent bytes to the other user's listener:\n%s", q.stdout.String())
	}
	s.checkNoLeaks([]string{devSecret}, nil)
}

// Socket paths under a directory others may write to, or through a link
// another user owns, are refused by brokerd and by brokerctl.
func TestUntrustedSocketPaths(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	real := mkdirOwned(t, filepath.Join(s.dir, "real"), 0o755, 0)
	link := filepath.Join(s.dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	rootLink := filepath.Join(s.dir, "rootlink")
	if err := os.Symlink(real, rootLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, nobodyUID, -1); err != nil {
		t.Fatal(err)
	}

	// brokerd refuses to listen through nobody's link, or below a
	// directory anyone may write to.
	open := mkdirOwned(t, filepath.Join(s.dir, "open"), 0o777, 0)
	for _, tt := range []struct {
		socket string
		subs   []string
	}{
		{filepath.Join(link, "d", "brokerd.sock"), []string{"symbolic link " + link, "uid 65534 (nobody)"}},
		{filepath.Join(open, "d", "brokerd.sock"), []string{"directory " + open, "mode 0777", "chmod go-w " + open}},
	} {
		p := s.brokerd(nil, "--dev", "--socket", tt.socket)
		if code := p.wait(t); code != 1 {
			t.Errorf("brokerd --socket %s exited %d, want 1", tt.socket, code)
		}
		for _, sub := range append(tt.subs, "brokerd: refusing to create the socket directory "+filepath.Dir(tt.socket), "choose another --socket") {
			if !strings.Contains(p.stderr.String(), sub) {
				t.Errorf("brokerd --socket %s: stderr lacks %q:\n%s", tt.socket, sub, p.stderr.String())
			}
		}
		if _, err := os.Lstat(filepath.Dir(tt.socket)); err == nil {
			t.Errorf("brokerd created %s", filepath.Dir(tt.socket))
		}
	}

	// brokerctl refuses the same paths to a live brokerd.
	s.socket = filepath.Join(real, "brokerd.sock")
	d := s.devBrokerd()
	s.ctlAt(filepath.Join(link, "brokerd.sock"), "", "tenants").wantExit(t, 4, "brokerctl: PermissionDenied: ",
		"symbolic link "+link, "uid 65534 (nobody)")
	s.ctlAt(filepath.Join(rootLink, "brokerd.sock"), "", "tenants").wantExit(t, 0) // a link of root's is followed
	if err := os.Chmod(s.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	s.ctl("", "tenants").wantExit(t, 4, "brokerctl: PermissionDenied: ", "directory "+s.dir, "mode 0777", "chmod go-w "+s.dir)
	// The audit line of the call through root's link may come after its
	// answer; the refused calls never connected, so none may follow it.
	brokertest.WaitFor(t, "the audit line of the allowed call", func() bool { return strings.Contains(d.stderr.String(), "msg=audit") })
	if n := strings.Count(d.stderr.String(), "msg=audit"); n != 1 {
		t.Errorf("brokerd audited %d calls, want 1 (the one through root's link)", n)
	}
	s.checkNoLeaks([]string{devSecret}, nil)
}

// brokerd refuses a configuration file that anyone but root and its own
// user could change: it decides where the client secret goes.
func TestConfigFileTrust(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := newConfigWorld(t, s, "memory", "0f0f0f0f-0000-4000-8000-00000000f001")
	groupDir := mkdirOwned(t, filepath.Join(s.dir, "etc"), 0o775, 0)
	inGroupDir := filepath.Join(groupDir, "brokerd.toml")
	if err := os.WriteFile(inGroupDir, []byte(w.Config()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		config string
		setup  func() error
		subs   []string
	}{
		{"mode 0666", w.config, func() error { return os.Chmod(w.config, 0o666) },
			[]string{w.config + " (owner uid 0 (root), mode 0666) is writable by group or others", "chmod go-w " + w.config}},
		{"owned by nobody", w.config, func() error { return os.Chown(w.config, nobodyUID, -1) },
			[]string{w.config + " (owner uid 65534 (nobody), mode 0600) is not owned by root", "chown root " + w.config}},
		{"group-writable directory", inGroupDir, func() error { return nil },
			[]string{"directory " + groupDir + " (owner uid 0 (root), mode 0775) is writable by group or others", "chmod go-w " + groupDir}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resetConfig(t, w)
			if err := tt.setup(); err != nil {
				t.Fatal(err)
			}
			p := s.brokerd(w.env, "--config", tt.config, "--socket", s.socket)
			if code := p.wait(t); code != 2 {
				t.Errorf("brokerd exited %d, want 2", code)
			}
			e := p.stderr.String()
			for _, sub := range append(tt.subs, "brokerd: refusing the configuration "+tt.config, "client secret") {
				if !strings.Contains(e, sub) {
					t.Errorf("stderr lacks %q:\n%s", sub, e)
				}
			}
			if strings.Count(e, "\n") != 1 {
				t.Errorf("the refusal is not one line:\n%s", e)
			}
			if _, err := os.Lstat(s.socket); err == nil {
				t.Errorf("brokerd created its socket")
			}
		})
	}
	// The control: the same file, root's and 0600, is served.
	resetConfig(t, w)
	w.start(s)
	s.ctl("", "tenants").wantExit(t, 0)
	s.checkNoLeaks([]string{w.secret}, nil)
}

// resetConfig rewrites the world's configuration file as root's, 0600.
func resetConfig(t *testing.T, w *configWorld) {
	t.Helper()
	w.write(t)
	if err := os.Chown(w.config, 0, -1); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w.config, 0o600); err != nil {
		t.Fatal(err)
	}
}
