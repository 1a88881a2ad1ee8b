package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// denyTracing makes brokerd non-dumpable: other processes of the same user
// may not ptrace it or read its memory through /proc, and no core dump is
// written.
func denyTracing() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("making the process non-dumpable: %w", err)
	}
	return nil
}
