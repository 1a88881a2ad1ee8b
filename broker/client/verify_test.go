package client

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/testuser"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// serveEnv makes this test binary, run as a child, serve a FakeBroker on
// the socket path it names instead of running the tests.
const serveEnv = "CLIENT_TEST_SERVE"

// dialEnv makes this test binary, run as a child, Dial the socket path it
// names and print the status code and message of the result.
const dialEnv = "CLIENT_TEST_DIAL"

func TestMain(m *testing.M) {
	if path := os.Getenv(serveEnv); path != "" {
		serveChild(path)
		return
	}
	if path := os.Getenv(dialEnv); path != "" {
		_, err := Dial(path)
		fmt.Printf("%s\n%v\n", status.Code(err), err)
		return
	}
	os.Exit(m.Run())
}

// serveChild listens on path, says "listening", and serves a FakeBroker,
// printing "read N" for every read that gets bytes from a client.
func serveChild(path string) {
	lis, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening")
	s := grpc.NewServer()
	brokerv1.RegisterBrokerServiceServer(s, &brokertest.FakeBroker{})
	_ = s.Serve(countingListener{lis})
}

type countingListener struct{ net.Listener }

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c}, nil
}

type countingConn struct{ net.Conn }

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		fmt.Printf("read %d\n", n)
	}
	return n, err
}

const nobody = testuser.Nobody

// foreignDaemon is a FakeBroker served by this test binary running as
// nobody.
type foreignDaemon struct {
	base string // a 0755 directory of root's holding everything
	sock string // where the child bound its socket, in a directory of its own
	out  *brokertest.LogBuffer
}

func startForeignDaemon(t *testing.T) *foreignDaemon {
	t.Helper()
	base := brokertest.ShortDir(t)
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "client.test")
	if err := copyFile(exe, bin); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(base, "own")
	if err := os.Mkdir(own, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(own, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	d := &foreignDaemon{base: base, sock: filepath.Join(own, "s.sock"), out: &brokertest.LogBuffer{}}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), serveEnv+"="+d.sock)
	cmd.Stdout, cmd.Stderr = d.out, d.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	brokertest.WaitFor(t, "the daemon of nobody to listen", func() bool { return strings.Contains(d.out.String(), "listening") })
	return d
}

// moveTo renames the daemon's socket to path and gives the file to root:
// the daemon keeps serving it, and nothing in the path says it is not
// root's.
func (d *foreignDaemon) moveTo(t *testing.T, path string) {
	t.Helper()
	if err := os.Rename(d.sock, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	d.sock = path
}

// received reports whether any client sent the daemon a byte.
func (d *foreignDaemon) received() bool { return strings.Contains(d.out.String(), "read ") }

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func wantStatus(t *testing.T, err error, code codes.Code, subs ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("err = %v, want %v", err, code)
	}
	msg := status.Convert(err).Message()
	if strings.Contains(msg, "\n") {
		t.Errorf("message is not one line: %q", msg)
	}
	for _, s := range subs {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
}

// A daemon of another user is refused by its path and, where the path is
// above suspicion, by its uid; naming that uid lets the client through.
func TestForeignDaemon(t *testing.T) {
	testuser.RequireRoot(t, "run a daemon as another user")
	d := startForeignDaemon(t)
	_, err := Dial(d.sock)
	wantStatus(t, err, codes.PermissionDenied, "refusing the brokerd socket "+d.sock, "directory "+filepath.Dir(d.sock),
		"uid 65534 (nobody)", "chown root", "--expect-uid 65534", "BROKERD_UID=65534")

	safe := filepath.Join(d.base, "safe")
	if err := os.Mkdir(safe, 0o755); err != nil {
		t.Fatal(err)
	}
	d.moveTo(t, filepath.Join(safe, "brokerd.sock"))
	_, err = Dial(d.sock)
	wantStatus(t, err, codes.PermissionDenied, "refusing the brokerd socket "+d.sock, "served by uid 65534 (nobody)",
		"--expect-uid 65534", "BROKERD_UID=65534")
	_, err = Dial(d.sock, WithExpectUID(4242))
	wantStatus(t, err, codes.PermissionDenied, "served by uid 65534 (nobody)", "the expected uid 4242")
	if d.received() {
		t.Fatalf("a refused client sent bytes:\n%s", d.out.String())
	}

	t.Setenv("BROKERD_UID", "no-such-user-q")
	_, err = Dial(d.sock)
	wantStatus(t, err, codes.InvalidArgument, `BROKERD_UID="no-such-user-q"`, "no user")

	// Trusted by name: the option wins over the environment.
	for _, trust := range []struct {
		env  string
		opts []Option
	}{{"nobody", nil}, {"65534", nil}, {"4242", []Option{WithExpectUID(nobody)}}} {
		t.Setenv("BROKERD_UID", trust.env)
		c, err := Dial(d.sock, trust.opts...)
		if err != nil {
			t.Fatalf("BROKERD_UID=%s: %v", trust.env, err)
		}
		if _, err := c.ListTenants(context.Background()); err != nil {
			t.Errorf("BROKERD_UID=%s: ListTenants: %v", trust.env, err)
		}
		c.Close()
	}
	if !d.received() {
		t.Error("the trusted client's calls never reached the daemon; the refusals above prove nothing")
	}
}

// A brokerd replaced after Dial by a daemon of another user: the
// reconnect is checked like the first connection, and SetCredential is
// refused before anything is sent.
func TestReconnectVerified(t *testing.T) {
	testuser.RequireRoot(t, "run a daemon as another user")
	d := startForeignDaemon(t)
	safe := filepath.Join(d.base, "safe")
	if err := os.Mkdir(safe, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(safe, "brokerd.sock")
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	lis.SetUnlinkOnClose(false)
	s := grpc.NewServer()
	brokerv1.RegisterBrokerServiceServer(s, &brokertest.FakeBroker{})
	go s.Serve(lis)
	t.Cleanup(s.Stop)

	c := dial(t, path)
	if _, err := c.GetToken(context.Background(), "contoso", nil, 0); err != nil {
		t.Fatal(err)
	}
	d.moveTo(t, path) // replaces root's socket file
	s.Stop()

	brokertest.WaitFor(t, "a call to fail otherwise than UNAVAILABLE", func() bool {
		_, err = c.SetCredential(context.Background(), secretRequest("partner", "s3cr3t-Q~reconnect"))
		return status.Code(err) != codes.Unavailable
	})
	wantStatus(t, err, codes.PermissionDenied, "refusing the brokerd socket "+path, "served by uid 65534 (nobody)")
	if strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("the error carries the secret: %v", err)
	}
	if d.received() {
		t.Fatalf("the client sent bytes to the daemon of nobody:\n%s", d.out.String())
	}
}

// The system service under socket activation: systemd (root) listens, in a
// directory of root's, on a socket it gives to the service user
// (SocketUser=brokerd). The socket file's owner decides nothing.
func TestSocketActivatedLayout(t *testing.T) {
	testuser.RequireRoot(t, "run a daemon as another user")
	dir := filepath.Join(brokertest.ShortDir(t), "brokerd")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "brokerd.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	brokerv1.RegisterBrokerServiceServer(s, &brokertest.FakeBroker{})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	if _, err := dial(t, path).ListTenants(context.Background()); err != nil {
		t.Fatalf("ListTenants on root's socket given to nobody: %v", err)
	}
}
