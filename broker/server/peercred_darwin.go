package server

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/tokenbroker/tokenbroker/broker"
)

// peerCaller reads the credentials the peer on the Unix socket fd had when
// it connected: LOCAL_PEERCRED (a struct xucred: uid and groups, the first
// of which is the effective gid) and LOCAL_PEERPID (pid).
func peerCaller(fd int) (broker.Caller, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return broker.Caller{}, fmt.Errorf("LOCAL_PEERCRED: %w", err)
	}
	pid, err := unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID)
	if err != nil {
		return broker.Caller{}, fmt.Errorf("LOCAL_PEERPID: %w", err)
	}
	return xucredCaller(cred.Version, cred.Uid, cred.Groups[:], int(cred.Ngroups), int32(pid))
}

// executable is "" on macOS: the one reliable source, proc_pidpath, is in
// libproc, which x/sys/unix does not wrap, and sysctl kern.procargs2 gives
// the path as the caller passed it to exec (possibly relative, and chosen
// by the caller), which would name the wrong file. Exe is informational.
func executable(int32) string { return "" }
