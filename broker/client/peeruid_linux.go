package client

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// peerUIDOf reads SO_PEERCRED's uid on the connected Unix socket fd.
func peerUIDOf(fd int) (uint32, error) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", err)
	}
	return cred.Uid, nil
}
