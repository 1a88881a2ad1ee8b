package server

import (
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/tokenbroker/tokenbroker/broker"
)

// connLimits counts the open connections of each uid and in total, and
// refuses one over limits.max_connections_per_uid or limits.max_connections.
//
// Admins (root and the daemon's uid) count against their own per-uid cap
// but neither count against nor are refused by the total: when other uids
// have filled it, an admin can still connect to see and fix what is going
// on. This adds at most two per-uid caps to the total, which the file
// descriptor check (checkFileLimit) accounts for. Admins can stop the
// daemon anyway; the cap only keeps a runaway admin script from taking
// every descriptor.
type connLimits struct {
	max, perUID int

	mu    sync.Mutex
	total int            // guarded by mu: open connections of non-admins
	byUID map[uint32]int // guarded by mu: open connections per uid; no zero entries
}

func newConnLimits(l broker.Limits) *connLimits {
	return &connLimits{max: l.MaxConnections, perUID: l.MaxConnectionsPerUID, byUID: map[uint32]int{}}
}

// open counts a new connection of c, or returns the key of the limit it is
// over.
func (cl *connLimits) open(c broker.Caller) (overKey string, limit int) {
	admin := broker.IsAdmin(c)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	switch {
	case cl.byUID[c.UID] >= cl.perUID:
		return "limits.max_connections_per_uid", cl.perUID
	case !admin && cl.total >= cl.max:
		return "limits.max_connections", cl.max
	}
	cl.byUID[c.UID]++
	if !admin {
		cl.total++
	}
	return "", 0
}

// closed uncounts a connection of c that open counted.
func (cl *connLimits) closed(c broker.Caller) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.byUID[c.UID]--; cl.byUID[c.UID] <= 0 {
		delete(cl.byUID, c.UID)
	}
	if !broker.IsAdmin(c) {
		cl.total--
	}
}

// all is the number of open connections, admins' included.
func (cl *connLimits) all() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	n := 0
	for _, c := range cl.byUID {
		n += c
	}
	return n
}

// counts are the open connections of uid and of all non-admins.
func (cl *connLimits) counts(uid uint32) (ofUID, total int) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.byUID[uid], cl.total
}

// fdHeadroom is what the daemon needs besides its callers' connections:
// the listening sockets, standard streams, the keystore's D-Bus connection
// and the HTTPS connections to Entra ID (up to max_idp_requests in flight,
// 64 idle).
const fdHeadroom = 256

// checkFileLimit warns when RLIMIT_NOFILE cannot hold every connection the
// limits allow plus headroom: the daemon would then fail to accept, or to
// reach Entra ID, before any cap refuses anyone. (Go raises the soft limit
// to the hard one at start; this reads the result.)
func checkFileLimit(l broker.Limits, log *slog.Logger) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		log.Warn("cannot read RLIMIT_NOFILE", "error", err)
		return
	}
	need := uint64(l.MaxConnections + 2*l.MaxConnectionsPerUID + fdHeadroom)
	if rl.Cur < need {
		log.Warn(fmt.Sprintf("the open file limit (RLIMIT_NOFILE %d) is below the %d that limits.max_connections (%d) needs: raise LimitNOFILE in the service unit, or lower limits.max_connections",
			rl.Cur, need, l.MaxConnections))
	}
}
