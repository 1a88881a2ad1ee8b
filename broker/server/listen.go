package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tokenbroker/tokenbroker/internal/pathtrust"
)

// maxSocketPath is the longest path a Unix socket can be bound at: the
// kernel's sun_path, less its terminating NUL.
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// OwnerOnly is the gid argument of Listen for a socket only its owner may
// use.
const OwnerOnly = -1

// Listen creates the Unix socket at path. With gid OwnerOnly the socket is
// 0600 and a directory Listen creates is 0700; with a group id, the socket
// is 0660 and such a directory 0750, both of that group (shared-socket
// mode for a system daemon). An existing directory keeps its mode, but the
// directory and every one above it must be controlled by this user and root
// alone, as pathtrust checks them: owned by one of them and not writable by
// group or others (a sticky /tmp is fine above the socket's directory, not
// as it), and reached through no symbolic link another user owns. A stale
// socket (nobody answers) is
// removed; a socket a live daemon answers on, or a path that is not a
// socket, is an error and is left alone.
func Listen(path string, gid int) (*net.UnixListener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes; Unix sockets allow at most %d: choose a shorter --socket", path, len(path), maxSocketPath)
	}
	dirMode, sockMode := os.FileMode(0o700), os.FileMode(0o600)
	if gid != OwnerOnly {
		dirMode, sockMode = 0o750, 0o660
	}
	dir := filepath.Dir(path)
	policy := pathtrust.Policy{Trusted: []uint32{uint32(os.Geteuid())}}
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		// Nothing is made, nor its group changed, where another user
		// controls the way there.
		if _, err := pathtrust.Above(existingAncestor(dir), policy); err != nil {
			return nil, fmt.Errorf("refusing to create the socket directory %s: %w; choose another --socket", dir, err)
		}
		if err := os.MkdirAll(dir, dirMode); err != nil {
			return nil, fmt.Errorf("creating the socket directory: %w", err)
		}
		if err := setMode(dir, dirMode, gid); err != nil {
			return nil, err
		}
	}
	if _, err := pathtrust.Dir(dir, policy); err != nil {
		return nil, fmt.Errorf("refusing the socket directory: %w; choose another --socket", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := setMode(path, sockMode, gid); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// existingAncestor is the nearest directory above dir (or dir itself)
// that exists, as far as Lstat can tell.
func existingAncestor(dir string) string {
	for {
		if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}

// setMode sets a path's permissions and, unless gid is OwnerOnly, its group.
func setMode(path string, mode os.FileMode, gid int) error {
	if gid != OwnerOnly {
		if err := os.Chown(path, -1, gid); err != nil {
			return fmt.Errorf("giving %s to group %d: %w", path, gid, err)
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("setting the mode of %s: %w", path, err)
	}
	return nil
}

// removeStale removes a socket file nobody answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("another brokerd is already serving on %s; stop it first or choose another --socket", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("checking whether a daemon answers on %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	return nil
}
