package server_test

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
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
	if _, err := server.Listen(filepath.Join(open, "b.sock"), server.OwnerOnly); err == nil || !strings.Contains(err.Error(), "writable by others") {
		t.Errorf("Listen in a world-writable directory: %v", err)
	}
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
