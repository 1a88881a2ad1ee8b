package client

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// MaxSocketPath is the longest Unix socket path, in bytes, that can be bound
// or dialled: sun_path less its terminating NUL (108 bytes on Linux, 104 on
// macOS).
const MaxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// The environment variables and defaults SocketPath consults, in this order
// after the flag value.
const (
	// socketEnv overrides the default socket path.
	socketEnv = "BROKERD_SOCKET"
	// runtimeDirEnv is the per-user runtime directory (XDG Base Directory).
	runtimeDirEnv = "XDG_RUNTIME_DIR"
	// userSocketRel is the socket's path under $XDG_RUNTIME_DIR (user mode).
	userSocketRel = "brokerd/brokerd.sock"
	// systemSocket is the socket of the system service (uid 0).
	systemSocket = "/run/brokerd/brokerd.sock"
	// macOSSocketRel is the socket's path under $HOME on macOS, beside the
	// default configuration (os.UserConfigDir).
	macOSSocketRel = "Library/Application Support/tokenbroker/brokerd.sock"
	// macOSSystemSocket is root's socket on macOS when HOME is not set.
	macOSSystemSocket = "/Library/Application Support/tokenbroker/brokerd.sock"
)

// SocketPath resolves the path of brokerd's Unix socket. The first of these
// that applies wins:
//
//  1. flagValue, when it is not empty (brokerd and brokerctl pass --socket);
//  2. $BROKERD_SOCKET, when it is not empty;
//  3. $XDG_RUNTIME_DIR/brokerd/brokerd.sock, when XDG_RUNTIME_DIR is set to an
//     absolute path (the user service);
//  4. /run/brokerd/brokerd.sock, for uid 0 (the system service).
//
// On macOS, 3 and 4 are macOSSocketPath's defaults instead.
//
// Otherwise it returns an error telling the user to pass --socket or set
// BROKERD_SOCKET. It also returns an error, naming the path and its length,
// when the path is longer than MaxSocketPath bytes. brokerd resolves the path
// it listens on with this same function, so both sides agree.
func SocketPath(flagValue string) (string, error) {
	return resolveSocketPath(flagValue, os.Getenv, os.Getuid())
}

// resolveSocketPath is SocketPath with its environment and uid passed in, so
// tests can cover every branch whoever runs them.
func resolveSocketPath(flagValue string, getenv func(string) string, uid int) (string, error) {
	path, err := chooseSocketPath(flagValue, getenv, uid)
	if err != nil {
		return "", err
	}
	if err := checkSocketPathLength(path); err != nil {
		return "", err
	}
	return path, nil
}

func chooseSocketPath(flagValue string, getenv func(string) string, uid int) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if env := getenv(socketEnv); env != "" {
		return env, nil
	}
	if runtime.GOOS == "darwin" {
		return macOSSocketPath(getenv, uid)
	}
	// The XDG Base Directory spec says a relative path in these variables is
	// invalid and must be ignored.
	if dir := getenv(runtimeDirEnv); dir != "" && filepath.IsAbs(dir) {
		return filepath.Join(dir, userSocketRel), nil
	}
	if uid == 0 {
		return systemSocket, nil
	}
	return "", errors.New("cannot find the brokerd socket: XDG_RUNTIME_DIR is not set; " +
		"pass --socket PATH or set BROKERD_SOCKET to the socket brokerd listens on")
}

// SocketDefaults describes, for help texts, where the socket is when no
// flag names one on this platform: where brokerd listens (SocketPath), or,
// with dial, where a client looks (DialPath).
func SocketDefaults(dial bool) string {
	switch {
	case runtime.GOOS == "darwin":
		return "$BROKERD_SOCKET, else ~/" + macOSSocketRel + " (" + macOSSystemSocket + " for root without HOME)"
	case dial:
		return "$BROKERD_SOCKET, else $XDG_RUNTIME_DIR/" + userSocketRel + " if it exists, else the system service's " + systemSocket
	}
	return "$BROKERD_SOCKET, else $XDG_RUNTIME_DIR/" + userSocketRel + " (" + systemSocket + " for root without XDG_RUNTIME_DIR)"
}

// DialPath resolves the socket a client dials: as SocketPath, except that
// when neither --socket nor $BROKERD_SOCKET names one and no socket exists
// at the user path ($XDG_RUNTIME_DIR/brokerd/brokerd.sock, or no
// XDG_RUNTIME_DIR at all), it falls back to the system service's
// /run/brokerd/brokerd.sock if that exists, for any user: a member of the
// brokerd group, or a user without a login session, reaches the system
// service without --socket. Whoever serves a path is checked when it is
// dialled, whichever path it is.
func DialPath(flagValue string) (string, error) {
	return resolveDialPath(flagValue, os.Getenv, os.Getuid(), socketExists)
}

func resolveDialPath(flagValue string, getenv func(string) string, uid int, exists func(string) bool) (string, error) {
	path, err := resolveSocketPath(flagValue, getenv, uid)
	switch {
	case flagValue != "" || getenv(socketEnv) != "":
		return path, err // named explicitly: no fallback
	case err == nil && (path == systemSocket || exists(path)):
		return path, nil
	case exists(systemSocket):
		return systemSocket, nil
	case err != nil:
		return "", errors.New("cannot find the brokerd socket: XDG_RUNTIME_DIR is not set and the system service's " +
			systemSocket + " does not exist; pass --socket PATH or set BROKERD_SOCKET to the socket brokerd listens on")
	}
	return path, nil // the user path: dialling it says there is no socket
}

// socketExists reports whether a socket is at path.
func socketExists(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Type() == os.ModeSocket
}

// checkSocketPathLength fails when path cannot fit in sun_path.
func checkSocketPathLength(path string) error {
	if len(path) > MaxSocketPath {
		return fmt.Errorf("socket path %q is %d bytes long; a Unix socket path can be at most %d bytes: "+
			"choose a shorter --socket or BROKERD_SOCKET", path, len(path), MaxSocketPath)
	}
	return nil
}

// macOSSocketPath is the default socket on macOS, which has no
// XDG_RUNTIME_DIR (and deletes files in $TMPDIR left unused for days):
// $HOME/Library/Application Support/tokenbroker/brokerd.sock, beside the
// default configuration, or for root without HOME the same under /Library.
func macOSSocketPath(getenv func(string) string, uid int) (string, error) {
	if home := getenv("HOME"); home != "" && filepath.IsAbs(home) {
		return filepath.Join(home, macOSSocketRel), nil
	}
	if uid == 0 {
		return macOSSystemSocket, nil
	}
	return "", errors.New("cannot find the brokerd socket: HOME is not set; " +
		"pass --socket PATH or set BROKERD_SOCKET to the socket brokerd listens on")
}
