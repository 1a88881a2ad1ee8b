package server

import (
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tokenbroker/tokenbroker/broker"
)

// peerCaller reads the credentials the peer on the Unix socket fd had when
// it connected: SO_PEERCRED (uid, gid, pid) and SO_PEERGROUPS
// (supplementary groups).
func peerCaller(fd int) (broker.Caller, error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return broker.Caller{}, fmt.Errorf("SO_PEERCRED/SO_PEERGROUPS: %w", err)
	}
	groups, err := peerGroups(fd)
	if err != nil {
		return broker.Caller{}, fmt.Errorf("SO_PEERCRED/SO_PEERGROUPS: %w", err)
	}
	return broker.Caller{UID: cred.Uid, GID: cred.Gid, Groups: groups, PID: cred.Pid}, nil
}

// peerGroups reads SO_PEERGROUPS, the supplementary groups the peer had
// when it connected. x/sys/unix has no typed getter for it.
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 64)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == unix.ERANGE && int(size/4) > len(buf):
			buf = make([]uint32, size/4)
		case errno == unix.ENOPROTOOPT:
			return nil, nil // kernel older than 4.13: primary group only
		case errno != 0:
			return nil, errno
		default:
			return buf[:size/4], nil
		}
	}
}

// executable is the file the process pid runs, from /proc/PID/exe, or ""
// when it cannot be read.
func executable(pid int32) string {
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(int(pid)) + "/exe")
	return exe
}
