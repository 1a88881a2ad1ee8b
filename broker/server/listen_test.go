package server_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/testuser"
)

func TestListenPermissions(t *testing.T) {
	path := filepath.Join(brokertest.ShortDir(t), "new", "b.sock")
	l, err := server.Listen(path, server.OwnerOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for p, want := range map[string]os.FileMode{path: os.ModeSocket | 0o600, filepath.Dir(path): os.ModeDir | 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode() & (os.ModeType | os.ModePerm); got != want {
			t.Errorf("%s: mode %v, want %v", p, got, want)
		}
	}
}

func TestListenRefusals(t *testing.T) {
	dir := brokertest.ShortDir(t)

	live := filepath.Join(dir, "live.sock")
	l, err := server.Listen(live, server.OwnerOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := server.Listen(live, server.OwnerOnly); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Errorf("second Listen on a live socket: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("live socket removed: %v", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Listen(file, server.OwnerOnly); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("regular file was touched")
	}

	long := filepath.Join(dir, strings.Repeat("x", 120))
	if _, err := server.Listen(long, server.OwnerOnly); err == nil || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("Listen on a long path: %v", err)
	}

	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if _, err := server.Listen(filepath.Join(open, "b.sock"), server.OwnerOnly); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("Listen in a world-writable directory: %v", err)
	}
}

// Listen refuses a socket path whose directories someone else controls,
// with one line naming the directory or link, its owner and mode, and the
// fix; a sticky directory is fine above the socket's own.
func TestListenUntrustedPaths(t *testing.T) {
	testuser.RequireRoot(t, "chown directories to another user")
	const nobody = testuser.Nobody
	base := brokertest.ShortDir(t)
	mkdir := func(rel string, mode os.FileMode, uid int) string {
		t.Helper()
		p := filepath.Join(base, rel)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, uid, -1); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sticky := mkdir("sticky", 0o777|os.ModeSticky, 0)
	open := mkdir("open", 0o777, 0)
	theirs := mkdir("theirs", 0o755, nobody)
	link := filepath.Join(base, "link")
	if err := os.Symlink(sticky, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, nobody, -1); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name, path string
		subs       []string
		notMade    string // a directory Listen must not have created
	}{
		{"other-writable ancestor", filepath.Join(open, "mine", "b.sock"),
			[]string{"directory " + open, "mode 0777", "chmod go-w " + open}, filepath.Join(open, "mine")},
		{"directory of another user", filepath.Join(theirs, "b.sock"),
			[]string{"directory " + theirs, "uid 65534 (nobody)", "chown root " + theirs}, ""},
		{"a link another user owns", filepath.Join(link, "mine", "b.sock"),
			[]string{"symbolic link " + link, "uid 65534 (nobody)"}, filepath.Join(sticky, "mine")},
		{"directly in a sticky directory", filepath.Join(sticky, "b.sock"),
			[]string{"directory " + sticky, "mode 1777", "sticky"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l, err := server.Listen(tt.path, server.OwnerOnly)
			if err == nil {
				l.Close()
				t.Fatalf("Listen(%s) succeeded", tt.path)
			}
			msg := err.Error()
			for _, sub := range append(tt.subs, "choose another --socket") {
				if !strings.Contains(msg, sub) {
					t.Errorf("error %q lacks %q", msg, sub)
				}
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if _, err := os.Lstat(tt.path); err == nil {
				t.Errorf("a socket was created at %s", tt.path)
			}
			if _, err := os.Lstat(tt.notMade); tt.notMade != "" && err == nil {
				t.Errorf("Listen created %s on a way another user controls", tt.notMade)
			}
		})
	}

	// A directory of its own inside the sticky one is fine.
	l, err := server.Listen(filepath.Join(sticky, "mine", "b.sock"), server.OwnerOnly)
	if err != nil {
		t.Fatalf("Listen below a sticky directory: %v", err)
	}
	l.Close()
}

func TestListenRemovesStaleSocket(t *testing.T) {
	path := filepath.Join(brokertest.ShortDir(t), "stale.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close() // the file stays; nobody answers
	l, err := server.Listen(path, server.OwnerOnly)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l.Close()
}
