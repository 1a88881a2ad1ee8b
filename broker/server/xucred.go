package server

import (
	"fmt"

	"github.com/tokenbroker/tokenbroker/broker"
)

// xucredVersion is XUCRED_VERSION, the layout of struct xucred this code
// reads.
const xucredVersion = 0

// xucredCaller turns the fields of a BSD struct xucred (LOCAL_PEERCRED)
// into a Caller. cr_groups[0] is the effective gid and the rest, up to
// cr_ngroups, the supplementary groups; the kernel fills at most
// len(groups) (16) of them, so a caller in more groups is seen in the
// first 16 only (an allow list naming a later group does not match it:
// denied, never wrongly allowed).
func xucredCaller(version, uid uint32, groups []uint32, ngroups int, pid int32) (broker.Caller, error) {
	if version != xucredVersion {
		return broker.Caller{}, fmt.Errorf("LOCAL_PEERCRED: struct xucred version %d, want %d", version, xucredVersion)
	}
	if ngroups < 1 || ngroups > len(groups) {
		return broker.Caller{}, fmt.Errorf("LOCAL_PEERCRED: %d groups, want 1 to %d", ngroups, len(groups))
	}
	return broker.Caller{UID: uid, GID: groups[0], Groups: append([]uint32(nil), groups[1:ngroups]...), PID: pid}, nil
}
