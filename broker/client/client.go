// Package client is the typed Go client for brokerd, the daemon that keeps
// app-only Entra ID access tokens fresh for every configured customer tenant
// and serves them over gRPC on a Unix socket.
//
// Programs that need a token import this package instead of holding a client
// secret themselves:
//
//	path, err := client.SocketPath("")
//	...
//	c, err := client.Dial(path)
//	...
//	defer c.Close()
//	tok, err := c.GetToken(ctx, "contoso", nil, 0)
//
// Security role: the connection is a plain Unix socket, without TLS; brokerd
// authorises each call from the caller's kernel-verified uid (SO_PEERCRED),
// so the socket's path and permissions are the trust boundary. The client
// holds up its end of it: before a byte is sent on any connection (the
// first, and every reconnect after brokerd restarts) it checks that only
// trusted users control the socket's path, the way OpenSSH checks
// authorized_keys, and reads the uid of the process serving the socket
// (SO_PEERCRED on the client's end). It talks only to a brokerd running as
// the caller's own uid, root, the owner of a socket directory only root
// could have made (the system service's /run/brokerd), or the uid named
// with WithExpectUID or $BROKERD_UID. Neither check can be turned off, so a
// user who binds the socket path first never receives a request, nor the
// client secret SetCredential sends. No method ever returns a secret.
//
// Every error a Client returns carries a gRPC status code, read it with
// status.Code(err) from google.golang.org/grpc/status. Errors from brokerd are
// its statuses, passed on unchanged: their messages say what to do. Errors
// found locally use the same codes: UNAVAILABLE when brokerd is not running or
// not answering on the socket, PERMISSION_DENIED when the socket may not be
// opened or is not trusted, INVALID_ARGUMENT for a bad path or argument.
package client

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// probeTimeout bounds the connect Dial makes to check that brokerd answers.
// Connecting to a Unix socket does not wait for the daemon to accept, so this
// only matters on an overloaded system.
const probeTimeout = 2 * time.Second

// Client is a connection to brokerd. It is safe for concurrent use; the
// underlying gRPC connection reconnects by itself after brokerd restarts.
type Client struct {
	path string
	conn *grpc.ClientConn
	api  brokerv1.BrokerServiceClient
}

// Dial connects to brokerd on the Unix socket at path, usually the result of
// SocketPath. It checks first that path is a socket something listens on, so
// that a daemon that is not running is reported at once and by name:
//
//   - no file at path: UNAVAILABLE, "no brokerd socket at PATH (is brokerd
//     running? ...)";
//   - a file that is not a socket: INVALID_ARGUMENT;
//   - a socket nobody listens on (left behind by a brokerd that exited):
//     UNAVAILABLE, "brokerd is not answering on PATH: ...";
//   - a socket the caller may not open: PERMISSION_DENIED.
//
// Dial, and every later reconnect, also refuses with PERMISSION_DENIED,
// before sending anything:
//
//   - a socket path that someone other than root and the trusted uids
//     could have replaced: a directory on the way owned by another user or
//     writable by group or others (a shared sticky directory such as /tmp
//     is accepted only above a directory that passes), or a symbolic link
//     another user owns;
//   - a socket served by a process whose uid is not the caller's effective
//     uid, root, the owner of the socket's directory when only root could
//     have made that directory (every directory above it is root's and not
//     writable by others), or the uid of WithExpectUID, else $BROKERD_UID
//     (a number or a user name; a bad value is INVALID_ARGUMENT).
//
// The connection is not encrypted: it never leaves the host.
func Dial(path string, opts ...Option) (*Client, error) {
	if path == "" {
		return nil, status.Error(codes.InvalidArgument, "no brokerd socket path given")
	}
	if err := checkSocketPathLength(path); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var o dialOptions
	for _, opt := range opts {
		opt(&o)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "brokerd socket %s: %v", path, err)
	}
	if err := checkSocketPathLength(abs); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	v, err := newVerifier(path, abs, o)
	if err != nil {
		return nil, err
	}
	if err := checkSocket(path); err != nil {
		return nil, err
	}
	if err := probe(v); err != nil {
		return nil, err
	}
	// gRPC's unix resolver URL-decodes the path, so it is escaped.
	target := "unix://" + (&url.URL{Path: abs}).EscapedPath()
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(v.dial),
		grpc.WithChainUnaryInterceptor(v.intercept),
		grpc.WithChainStreamInterceptor(v.interceptStream))
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "brokerd socket %s: %v", path, err)
	}
	return &Client{path: path, conn: conn, api: brokerv1.NewBrokerServiceClient(conn)}, nil
}

// checkSocket stats path and reports, as a status error, why it is not a
// socket brokerd could be listening on.
func checkSocket(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return notRunning(path)
	case errors.Is(err, fs.ErrPermission):
		return status.Errorf(codes.PermissionDenied, "cannot reach the brokerd socket %s: %v", path, unwrapPathError(err))
	case err != nil:
		return status.Errorf(codes.Unavailable, "cannot reach the brokerd socket %s: %v", path, unwrapPathError(err))
	case fi.Mode().Type() != fs.ModeSocket:
		return status.Errorf(codes.InvalidArgument,
			"%s is not a Unix socket (it is a %s); point --socket or BROKERD_SOCKET at the socket brokerd listens on",
			path, describeFileType(fi.Mode()))
	}
	return nil
}

// probe makes one verified connection and hangs up, so that a stale or
// untrusted socket is reported by Dial rather than by the first call. gRPC
// servers close such a connection without logging it.
func probe(v *verifier) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	c, err := v.connect(ctx)
	if err != nil {
		return err
	}
	return c.Close()
}

func notRunning(path string) error {
	return status.Errorf(codes.Unavailable,
		"no brokerd socket at %s (is brokerd running? start it with `brokerd` or `brokerd --dev`)", path)
}

// GetToken returns an access token for tenant: its configured name, tenant id
// or one of its domains. Empty scopes means the scopes configured for the
// tenant's app. The token has at least minValid left; 0 leaves the choice to
// brokerd (5 minutes unless configured otherwise). brokerd answers from its
// cache, or waits for a fresh token within ctx's deadline.
func (c *Client) GetToken(ctx context.Context, tenant string, scopes []string, minValid time.Duration) (*brokerv1.GetTokenResponse, error) {
	if minValid < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "minimum validity %v is negative", minValid)
	}
	req := &brokerv1.GetTokenRequest{Tenant: tenant, Scopes: scopes}
	if minValid > 0 {
		req.MinValid = durationpb.New(minValid)
	}
	return c.api.GetToken(ctx, req)
}

// ListTenants reports the state of every configured tenant, sorted by name.
// It never carries a token or a secret.
func (c *Client) ListTenants(ctx context.Context) ([]*brokerv1.TenantStatus, error) {
	resp, err := c.api.ListTenants(ctx, &brokerv1.ListTenantsRequest{})
	if err != nil {
		return nil, err
	}
	return resp.GetTenants(), nil
}

// GetVersion reports how the brokerd on the other end was built: its module
// version, commit, Go version and platform. Any connected caller may ask.
func (c *Client) GetVersion(ctx context.Context) (*brokerv1.GetVersionResponse, error) {
	return c.api.GetVersion(ctx, &brokerv1.GetVersionRequest{})
}

// SetCredential stores a new credential for req.App, the configured name of
// an Entra ID app: a client secret or a certificate with its key. brokerd
// first verifies it against one of the app's tenants (named in the
// response) unless req.NoVerify is set, and keeps the old one if that
// fails. The credential is not kept by the Client and never appears in its
// errors.
func (c *Client) SetCredential(ctx context.Context, req *brokerv1.SetCredentialRequest) (*brokerv1.SetCredentialResponse, error) {
	return c.api.SetCredential(ctx, req)
}

// GetCredential describes the credential brokerd holds for app: its kind,
// when it was set, a certificate's thumbprint and expiry. It never returns
// the secret or the key.
func (c *Client) GetCredential(ctx context.Context, app string) (*brokerv1.CredentialInfo, error) {
	resp, err := c.api.GetCredential(ctx, &brokerv1.GetCredentialRequest{App: app})
	if err != nil {
		return nil, err
	}
	return resp.GetCredential(), nil
}

// DeleteCredential removes app's credential from brokerd's keystore and
// returns what was deleted.
func (c *Client) DeleteCredential(ctx context.Context, app string) (*brokerv1.CredentialInfo, error) {
	resp, err := c.api.DeleteCredential(ctx, &brokerv1.DeleteCredentialRequest{App: app})
	if err != nil {
		return nil, err
	}
	return resp.GetCredential(), nil
}

// Reload makes brokerd read its configuration file again, as SIGHUP does,
// and says what changed; a configuration brokerd refuses is the error,
// and the old one keeps serving. Only root and brokerd's own user may.
func (c *Client) Reload(ctx context.Context) (*brokerv1.ReloadResponse, error) {
	return c.api.Reload(ctx, &brokerv1.ReloadRequest{})
}

// Close closes the connection to brokerd. Calls in flight fail with
// CANCELED.
func (c *Client) Close() error {
	return c.conn.Close()
}

// unwrapPathError drops the *fs.PathError wrapper, whose text repeats the
// path the caller's message already names.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// unwrapOpError turns "dial unix PATH: connect: connection refused" into
// "connect: connection refused"; the caller's message names the path.
func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

func describeFileType(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "regular file"
	case fs.ModeDir:
		return "directory"
	case fs.ModeNamedPipe:
		return "named pipe"
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		return "device"
	default:
		return fmt.Sprintf("file of mode %v", m.Type())
	}
}
