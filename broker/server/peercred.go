package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/credentials"

	"github.com/tokenbroker/tokenbroker/broker"
)

// peerListener hands gRPC only connections whose caller the kernel has
// identified and whose uid is within its connection limits: Accept reads
// the caller's uid, gid, groups and pid from each connection (peerCaller:
// SO_PEERCRED and SO_PEERGROUPS on Linux, LOCAL_PEERCRED and LOCAL_PEERPID
// on macOS), as SPIRE's peertracker does, and closes at once a
// connection whose credentials cannot be read or whose uid is over
// limits.max_connections_per_uid or limits.max_connections. The identity is
// fixed before the first RPC and cannot change on that connection.
type peerListener struct {
	net.Listener
	log   *slog.Logger
	conns *connLimits
	// refusals rate limits the log lines of refused connections per uid.
	refusals *uidLimiter
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		p, err := readPeer(c)
		if err != nil {
			l.log.Warn("connection refused: cannot read the caller's credentials", "error", err)
			c.Close()
			continue
		}
		if key, limit := l.conns.open(p.Caller); key != "" {
			c.Close()
			l.refused(p.Caller, key, limit)
			continue
		}
		// Read only for connections kept: a flood of refused ones costs
		// no lookups.
		p.Exe = executable(p.Caller.PID)
		return &peerConn{Conn: c, peer: p, uncount: func() { l.conns.closed(p.Caller) }}, nil
	}
}

// refused logs a connection refused for being over a limit, at most once
// per uid and minute; the rest are counted in one line when the minute
// ends (connRefusalSummary).
func (l *peerListener) refused(c broker.Caller, key string, limit int) {
	if !l.refusals.allow(c.UID) {
		return
	}
	ofUID, total := l.conns.counts(c.UID)
	l.log.Warn(fmt.Sprintf("connection refused: uid %d is over %s (%d)", c.UID, key, limit),
		"uid", c.UID, "pid", c.PID, "open_of_uid", ofUID, "open_total", total)
}

// connRefusalSummary is the report of the refusals limiter.
func connRefusalSummary(log *slog.Logger) func(uid uint32, held int) {
	return func(uid uint32, held int) {
		log.Warn(fmt.Sprintf("refused %d more %s from uid %d: over limits.max_connections_per_uid or limits.max_connections", held, plural(held, "connection"), uid),
			"uid", uid, "refused", held)
	}
}

// peerConn is an accepted connection and its caller. It is counted in
// connLimits until closed.
type peerConn struct {
	net.Conn
	peer    *Peer
	once    sync.Once
	uncount func()
}

// Close closes the connection and uncounts it, once.
func (c *peerConn) Close() error {
	c.once.Do(c.uncount)
	return c.Conn.Close()
}

// Peer is the caller on one connection, carried into gRPC as its
// credentials.AuthInfo.
type Peer struct {
	credentials.CommonAuthInfo
	Caller broker.Caller
	// Exe is the caller's executable from /proc/PID/exe at connect time;
	// empty when it cannot be read (e.g. a process of another user
	// without ptrace access) and always on macOS (see executable).
	// Informational: it names, it does not prove.
	Exe string

	// audited holds the tenants (broker.Authorize's key) whose GetToken
	// decision this connection has audited, each with the configuration
	// generation it was made under, so that repeated calls write one audit
	// line, not one per call, until a reload: a decision is audited again
	// under each new configuration. Keyed by the resolved tenant, it holds
	// at most one entry per configured tenant, one shared by every unknown
	// name, and one for ListTenants, whatever strings the caller sends.
	audited sync.Map // string to uint64

	nAudited atomic.Int32
}

// AuthType implements credentials.AuthInfo.
func (*Peer) AuthType() string { return "peercred" }

// maxAudited bounds the entries of Peer.audited. A caller allowed on more
// tenants than this gets an audit line for every call beyond it.
const maxAudited = 1024

// firstDecision reports whether the decision about tenant, made under
// configuration generation gen, is to be audited: the first on this
// connection under gen, or any once maxAudited tenants are remembered.
func (p *Peer) firstDecision(tenant string, gen uint64) bool {
	if v, seen := p.audited.Load(tenant); seen {
		if v.(uint64) == gen {
			return false
		}
		// Made under another configuration.
		p.audited.Store(tenant, gen)
		return true
	}
	if p.nAudited.Add(1) > maxAudited {
		p.nAudited.Add(-1)
		return true
	}
	if _, seen := p.audited.LoadOrStore(tenant, gen); seen {
		p.nAudited.Add(-1)
		return false
	}
	return true
}

// auditedTenants is the number of entries in audited.
func (p *Peer) auditedTenants() int { return int(p.nAudited.Load()) }

func readPeer(c net.Conn) (*Peer, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("not a Unix socket connection (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var (
		caller broker.Caller
		serr   error
	)
	err = raw.Control(func(fd uintptr) { caller, serr = peerCaller(int(fd)) })
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, err
	}
	return &Peer{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity},
		Caller:         caller,
	}, nil
}

// peerCreds is the gRPC TransportCredentials that turns the peerConn made
// by peerListener into the connection's AuthInfo.
type peerCreds struct{}

var errNoPeer = errors.New("connection carries no peer credentials")

func (peerCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	pc, ok := c.(*peerConn)
	if !ok {
		return nil, nil, errNoPeer
	}
	return c, pc.peer, nil
}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peercred: server-side credentials only")
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

func (peerCreds) Clone() credentials.TransportCredentials { return peerCreds{} }

func (peerCreds) OverrideServerName(string) error { return nil }
