package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// denyTracing is what OpenSSH's ssh-agent does on macOS, where there is no
// PR_SET_DUMPABLE: ptrace(PT_DENY_ATTACH) refuses debuggers that try to
// attach later (a brokerd started under a debugger exits, by design of
// PT_DENY_ATTACH), and a zero RLIMIT_CORE writes no core dump. Reading
// another process's memory through task_for_pid needs root or the
// debugger entitlement on macOS in any case.
func denyTracing() error {
	if err := unix.PtraceDenyAttach(); err != nil {
		return fmt.Errorf("denying debuggers (ptrace PT_DENY_ATTACH): %w", err)
	}
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		return fmt.Errorf("disabling core dumps (RLIMIT_CORE): %w", err)
	}
	return nil
}
