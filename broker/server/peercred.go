package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"

	"github.com/tokenbroker/tokenbroker/broker"
)

// peerListener hands gRPC only connections whose caller the kernel has
// identified: Accept reads SO_PEERCRED (uid, gid, pid) and SO_PEERGROUPS
// (supplementary groups) from each connection, as SPIRE's peertracker does,
// and closes a connection whose credentials cannot be read. The identity is
// fixed before the first RPC and cannot change on that connection.
type peerListener struct {
	net.Listener
	log *slog.Logger
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
		return &peerConn{Conn: c, peer: p}, nil
	}
}

// peerConn is an accepted connection and its caller.
type peerConn struct {
	net.Conn
	peer *Peer
}

// Peer is the caller on one connection, carried into gRPC as its
// credentials.AuthInfo.
type Peer struct {
	credentials.CommonAuthInfo
	Caller broker.Caller
	// Exe is the caller's executable from /proc/PID/exe at connect time;
	// empty when it cannot be read (e.g. a process of another user
	// without ptrace access). Informational: it names, it does not prove.
	Exe string

	// decisions are the GetToken decisions on this connection, by tenant
	// as asked (string -> bool); read on every call, so lock-free.
	decisions sync.Map
	nDecided  atomic.Int32
}

// AuthType implements credentials.AuthInfo.
func (*Peer) AuthType() string { return "peercred" }

// maxDecisions bounds the decisions cached per connection.
const maxDecisions = 256

// decision returns the cached decision for a tenant on this connection.
func (p *Peer) decision(tenant string) (allowed, ok bool) {
	v, ok := p.decisions.Load(tenant)
	if !ok {
		return false, false
	}
	return v.(bool), true
}

// remember caches a decision, up to maxDecisions per connection.
func (p *Peer) remember(tenant string, allowed bool) {
	if p.nDecided.Add(1) <= maxDecisions {
		p.decisions.Store(tenant, allowed)
	}
}

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
		cred   *unix.Ucred
		groups []uint32
		serr   error
	)
	err = raw.Control(func(fd uintptr) {
		if cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); serr != nil {
			return
		}
		groups, serr = peerGroups(int(fd))
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("SO_PEERCRED/SO_PEERGROUPS: %w", err)
	}
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(int(cred.Pid)) + "/exe")
	return &Peer{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity},
		Caller:         broker.Caller{UID: cred.Uid, GID: cred.Gid, Groups: groups, PID: cred.Pid},
		Exe:            exe,
	}, nil
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
