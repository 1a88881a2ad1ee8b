package client

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/internal/pathtrust"
)

// expectUIDEnv names a uid (or user) whose brokerd the client trusts, when
// Dial is not given WithExpectUID.
const expectUIDEnv = "BROKERD_UID"

// Option changes how Dial connects.
type Option func(*dialOptions)

type dialOptions struct {
	expectUID *uint32
}

// WithExpectUID trusts a brokerd running as uid, besides the caller's own
// uid, root and the owner of a protected socket directory (see Dial). It
// takes precedence over $BROKERD_UID. brokerctl's --expect-uid sets it.
func WithExpectUID(uid uint32) Option {
	return func(o *dialOptions) { o.expectUID = &uid }
}

// verifier checks every connection a Client makes before a byte is sent on
// it: the socket's path (pathtrust, with the trusted uids below), then the
// uid of the process serving it (peerUID, read on the client's end).
type verifier struct {
	path   string  // as the caller gave it, for messages
	abs    string  // the absolute path that is dialled
	self   uint32  // the caller's effective uid
	expect *uint32 // WithExpectUID or $BROKERD_UID

	// refusal is set when the last connection gRPC asked for was refused
	// (nil when it was made, or failed for another reason); calls that
	// fail for want of a connection report it instead of gRPC's
	// UNAVAILABLE.
	refusal atomic.Pointer[status.Status]
}

func newVerifier(path, abs string, o dialOptions) (*verifier, error) {
	v := &verifier{path: path, abs: abs, self: uint32(os.Geteuid()), expect: o.expectUID}
	if v.expect == nil {
		if s := os.Getenv(expectUIDEnv); s != "" {
			uid, err := pathtrust.LookupUID(s)
			if err != nil {
				return nil, status.Errorf(codes.InvalidArgument, "%s=%q: %v", expectUIDEnv, s, err)
			}
			v.expect = &uid
		}
	}
	return v, nil
}

// connect checks the socket's path, connects, and checks who serves it.
// Its errors are statuses: PERMISSION_DENIED for a socket or daemon it
// does not trust.
func (v *verifier) connect(ctx context.Context) (net.Conn, error) {
	res, err := pathtrust.File(v.abs, v.policy())
	if err != nil {
		return nil, v.pathError(err)
	}
	c, err := dialUnix(ctx, v.abs)
	if err != nil {
		return nil, v.connectError(err)
	}
	uid, err := peerUID(c)
	if err != nil {
		c.Close()
		return nil, status.Errorf(codes.Unavailable, "cannot tell who serves the brokerd socket %s: %v", v.path, err)
	}
	if !v.trusts(uid, res) {
		c.Close()
		return nil, status.Errorf(codes.PermissionDenied,
			"refusing the brokerd socket %s: it is served by %s, not by this user (%s), root%s or the owner of a socket directory only root could have made; "+
				"if that daemon is to be trusted, pass --expect-uid %d or set %s=%d",
			v.path, pathtrust.DescribeUID(uid), pathtrust.DescribeUID(v.self), v.expectText(), uid, expectUIDEnv, uid)
	}
	return c, nil
}

// dial is gRPC's dialer: every connection, the first and those after
// brokerd restarts, goes through connect. gRPC passes its own form of the
// address, which is not needed.
func (v *verifier) dial(ctx context.Context, _ string) (net.Conn, error) {
	c, err := v.connect(ctx)
	if err != nil {
		st := status.Convert(err)
		if st.Code() == codes.PermissionDenied {
			v.refusal.Store(st)
		} else {
			v.refusal.Store(nil)
		}
		// gRPC wraps this in its own UNAVAILABLE; a plain error keeps its
		// message readable there.
		return nil, errors.New(st.Message())
	}
	v.refusal.Store(nil)
	return c, nil
}

// intercept turns a call that failed for want of a connection the
// verifier refused into that refusal, and one whose connection brokerd
// closed during the HTTP/2 handshake into a message that says why it may
// have (brokerd closes a connection over its uid's cap as it accepts it).
func (v *verifier) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return v.explain(invoker(ctx, method, req, reply, cc, opts...))
}

// interceptStream is intercept for the start of a stream.
func (v *verifier) interceptStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	return s, v.explain(err)
}

// explain is intercept's translation of a call's error.
func (v *verifier) explain(err error) error {
	if status.Code(err) != codes.Unavailable {
		return err
	}
	if st := v.refusal.Load(); st != nil {
		return st.Err()
	}
	msg := status.Convert(err).Message()
	switch {
	case strings.Contains(msg, "server preface") || strings.Contains(msg, "client preface"):
		return status.Errorf(codes.Unavailable, "brokerd closed the connection on %s as soon as it was made (%s): "+
			"this uid may be over limits.max_connections_per_uid, or all callers over limits.max_connections; close idle connections and retry", v.path, msg)
	case strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset by peer"):
		// The same, when the preface got out before brokerd closed the
		// connection and the request did not; or brokerd stopped.
		return status.Errorf(codes.Unavailable, "brokerd closed the connection on %s (%s): "+
			"if it did so at once, this uid may be over limits.max_connections_per_uid, or all callers over limits.max_connections; "+
			"close idle connections and retry", v.path, msg)
	}
	return err
}

func (v *verifier) policy() pathtrust.Policy {
	p := pathtrust.Policy{Trusted: []uint32{v.self}, ProtectedOwner: true}
	if v.expect != nil {
		p.Trusted = append(p.Trusted, *v.expect)
	}
	return p
}

// trusts decides whether the daemon's uid may be sent requests.
func (v *verifier) trusts(uid uint32, res pathtrust.Result) bool {
	return uid == v.self || uid == 0 || (v.expect != nil && uid == *v.expect) || (res.Protected && uid == res.DirOwner)
}

func (v *verifier) expectText() string {
	if v.expect == nil {
		return ""
	}
	return ", the expected " + pathtrust.DescribeUID(*v.expect) + ","
}

// pathError reports why the socket's path is not trusted.
func (v *verifier) pathError(err error) error {
	var pe *pathtrust.Error
	switch {
	case errors.As(err, &pe):
		hint := "choose another --socket"
		if pe.UID != 0 && pe.UID != v.self {
			hint += fmt.Sprintf(", or if the daemon of %s is to be trusted, pass --expect-uid %d or set %s=%d",
				pathtrust.DescribeUID(pe.UID), pe.UID, expectUIDEnv, pe.UID)
		}
		return status.Errorf(codes.PermissionDenied, "refusing the brokerd socket %s: %v; %s", v.path, err, hint)
	case errors.Is(err, fs.ErrNotExist):
		return notRunning(v.path)
	case errors.Is(err, fs.ErrPermission):
		return status.Errorf(codes.PermissionDenied, "cannot reach the brokerd socket %s: %v", v.path, err)
	default:
		return status.Errorf(codes.Unavailable, "cannot check the brokerd socket %s: %v", v.path, err)
	}
}

// connectError reports why connecting to the socket failed.
func (v *verifier) connectError(err error) error {
	cause := unwrapOpError(err)
	switch {
	case errors.Is(err, syscall.ENOENT):
		return notRunning(v.path)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return status.Errorf(codes.PermissionDenied,
			"not allowed to connect to the brokerd socket %s: %v (check the socket's owner, group and mode)", v.path, cause)
	case errors.Is(err, syscall.ECONNREFUSED):
		return status.Errorf(codes.Unavailable,
			"brokerd is not answering on %s: %v (a socket left by a brokerd that exited? start brokerd again)", v.path, cause)
	default:
		return status.Errorf(codes.Unavailable, "brokerd is not answering on %s: %v", v.path, cause)
	}
}

// peerUID reads the uid of the process that listens on the other end of
// c: on a connected Unix socket, each side can read the other's
// credentials (peerUIDOf), the server's as they were when it called listen.
func peerUID(c net.Conn) (uint32, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("not a Unix socket connection (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		uid  uint32
		serr error
	)
	if err := raw.Control(func(fd uintptr) { uid, serr = peerUIDOf(int(fd)) }); err != nil {
		return 0, err
	}
	return uid, serr
}

// dialUnix connects to the socket at path. A Unix socket whose queue of
// connections waiting to be accepted is full refuses at once (EAGAIN)
// rather than waiting; that is a daemon busy accepting (another user may
// be flooding it), not one that is gone, so dialUnix tries again, backing
// off from 5 ms to 100 ms, until ctx ends.
func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		c, err := d.DialContext(ctx, "unix", path)
		if !errors.Is(err, syscall.EAGAIN) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
	}
}
