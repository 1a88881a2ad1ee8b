package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/testuser"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

func dial(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatalf("Dial(%q): %v", path, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialErrors(t *testing.T) {
	dir := brokertest.ShortDir(t)

	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}

	// A socket file nobody listens on, as left by a daemon that was killed.
	stale := filepath.Join(dir, "stale.sock")
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	lis.SetUnlinkOnClose(false)
	lis.Close()

	missing := filepath.Join(dir, "missing.sock")
	tooLong := "/tmp/" + strings.Repeat("x", MaxSocketPath)

	tests := []struct {
		name     string
		path     string
		wantCode codes.Code
		wantMsg  []string
	}{
		{"missing socket", missing, codes.Unavailable,
			[]string{"no brokerd socket at " + missing, "is brokerd running?", "`brokerd --dev`"}},
		{"regular file", regular, codes.InvalidArgument,
			[]string{regular + " is not a Unix socket", "regular file", "--socket"}},
		{"directory", dir, codes.InvalidArgument,
			[]string{dir + " is not a Unix socket", "directory"}},
		{"stale socket", stale, codes.Unavailable,
			[]string{"brokerd is not answering on " + stale, "connection refused"}},
		{"empty path", "", codes.InvalidArgument, []string{"no brokerd socket path"}},
		{"path too long", tooLong, codes.InvalidArgument, []string{"at most 107 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Dial(tt.path)
			if err == nil {
				c.Close()
				t.Fatalf("Dial(%q) succeeded, want %v", tt.path, tt.wantCode)
			}
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("Dial(%q) code = %v, want %v (err: %v)", tt.path, got, tt.wantCode, err)
			}
			msg := status.Convert(err).Message()
			for _, sub := range tt.wantMsg {
				if !strings.Contains(msg, sub) {
					t.Errorf("message %q does not contain %q", msg, sub)
				}
			}
		})
	}
}

// A socket the caller may not open is PERMISSION_DENIED. Root may open any
// socket, so as root the Dial runs in this test binary as user nobody.
func TestDialPermissionDenied(t *testing.T) {
	path := brokertest.Serve(t, &brokertest.FakeBroker{})
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	var code, msg string
	if os.Geteuid() == 0 {
		dir := filepath.Dir(path)
		if err := os.Chmod(dir, 0o755); err != nil { // nobody may look, not connect
			t.Fatal(err)
		}
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "client.test") // where nobody may run it
		if err := copyFile(exe, bin); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), dialEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testuser.Nobody, Gid: testuser.Nogroup, Groups: []uint32{}}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dialling as nobody: %v", err)
		}
		code, msg, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	} else {
		if err := os.Chmod(path, 0o000); err != nil {
			t.Fatal(err)
		}
		_, err := Dial(path)
		code, msg = status.Code(err).String(), fmt.Sprint(err)
	}
	if code != codes.PermissionDenied.String() {
		t.Fatalf("Dial code = %v, want PermissionDenied (err: %v)", code, msg)
	}
	if !strings.Contains(msg, path) {
		t.Errorf("error %q does not name the socket", msg)
	}
}

func TestDialRelativePath(t *testing.T) {
	path := brokertest.Serve(t, &brokertest.FakeBroker{})
	t.Chdir(filepath.Dir(path))
	c := dial(t, filepath.Base(path))
	if _, err := c.ListTenants(context.Background()); err != nil {
		t.Fatalf("ListTenants over a relative socket path: %v", err)
	}
}

func TestGetToken(t *testing.T) {
	b := &brokertest.FakeBroker{}
	c := dial(t, brokertest.Serve(t, b))
	ctx := context.Background()

	resp, err := c.GetToken(ctx, "contoso", nil, 0)
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	if resp.GetAccessToken() != "token-for-contoso" {
		t.Errorf("access token = %q", resp.GetAccessToken())
	}
	if _, err := c.GetToken(ctx, "fabrikam", []string{"https://graph.microsoft.com/.default"}, 10*time.Minute); err != nil {
		t.Fatalf("GetToken: %v", err)
	}

	if len(b.GetRequests()) != 2 {
		t.Fatalf("server saw %d requests, want 2", len(b.GetRequests()))
	}
	if first := b.GetRequests()[0]; first.GetTenant() != "contoso" || first.MinValid != nil || len(first.GetScopes()) != 0 {
		t.Errorf("first request = %v, want tenant contoso with min_valid and scopes unset", first)
	}
	second := b.GetRequests()[1]
	if second.GetTenant() != "fabrikam" || second.GetMinValid().AsDuration() != 10*time.Minute ||
		len(second.GetScopes()) != 1 || second.GetScopes()[0] != "https://graph.microsoft.com/.default" {
		t.Errorf("second request = %v", second)
	}
}

func TestGetTokenNegativeMinValid(t *testing.T) {
	b := &brokertest.FakeBroker{}
	c := dial(t, brokertest.Serve(t, b))
	_, err := c.GetToken(context.Background(), "contoso", nil, -time.Second)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("code = %v, want InvalidArgument (err: %v)", status.Code(err), err)
	}
	if len(b.GetRequests()) != 0 {
		t.Errorf("the request reached the server")
	}
}

func TestServerStatusPassedThrough(t *testing.T) {
	const msg = "no credential stored for app partner: run `brokerctl credential set --app partner`"
	b := &brokertest.FakeBroker{GetErr: status.Error(codes.FailedPrecondition, msg)}
	c := dial(t, brokertest.Serve(t, b))
	_, err := c.GetToken(context.Background(), "contoso", nil, 0)
	st := status.Convert(err)
	if st.Code() != codes.FailedPrecondition || st.Message() != msg {
		t.Errorf("error = %v / %q, want FailedPrecondition / %q", st.Code(), st.Message(), msg)
	}
}

func TestListTenants(t *testing.T) {
	want := []*brokerv1.TenantStatus{
		{Name: "contoso", TenantId: "t1", App: "partner", State: brokerv1.TenantState_TENANT_STATE_READY},
		{Name: "fabrikam", TenantId: "t2", App: "partner", State: brokerv1.TenantState_TENANT_STATE_FAILED, LastError: "boom"},
	}
	c := dial(t, brokertest.Serve(t, &brokertest.FakeBroker{Tenants: want}))
	got, err := c.ListTenants(context.Background())
	if err != nil {
		t.Fatalf("ListTenants: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("got %d tenants, want %d", len(got), len(want))
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("tenant %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestSetCredential(t *testing.T) {
	b := &brokertest.FakeBroker{SetResp: &brokerv1.SetCredentialResponse{VerifiedWithTenant: "contoso"}}
	c := dial(t, brokertest.Serve(t, b))
	resp, err := c.SetCredential(context.Background(), secretRequest("partner", "s3cr3t~value"))
	if err != nil {
		t.Fatalf("SetCredential: %v", err)
	}
	if resp.GetVerifiedWithTenant() != "contoso" {
		t.Errorf("verified_with_tenant = %q", resp.GetVerifiedWithTenant())
	}
	if len(b.SetRequests()) != 1 || b.SetRequests()[0].GetApp() != "partner" || b.SetRequests()[0].GetClientSecret() != "s3cr3t~value" {
		t.Errorf("server saw %v", b.SetRequests())
	}
}

// TestDaemonGoneAfterDial checks that a daemon that stops after Dial gives
// an UNAVAILABLE error that names the socket.
func TestDaemonGoneAfterDial(t *testing.T) {
	path := filepath.Join(brokertest.ShortDir(t), "brokerd.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	brokerv1.RegisterBrokerServiceServer(s, &brokertest.FakeBroker{})
	go s.Serve(lis)
	c := dial(t, path)
	s.Stop() // closes the listener and removes the socket file

	_, err = c.GetToken(context.Background(), "contoso", nil, 0)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("code = %v, want Unavailable (err: %v)", status.Code(err), err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the socket", err)
	}
}

func TestCloseIsClean(t *testing.T) {
	c, err := Dial(brokertest.Serve(t, &brokertest.FakeBroker{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// A brokerd that closes each connection as soon as it accepts it (what it
// does to a uid over its connection cap) is reported as such, not as a
// bare transport error.
func TestConnectionClosedAtOnce(t *testing.T) {
	path := filepath.Join(brokertest.ShortDir(t), "brokerd.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	c := dial(t, path)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.GetToken(ctx, "contoso", nil, 0)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	for _, want := range []string{"brokerd closed the connection", "limits.max_connections_per_uid"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// A daemon whose queue of connections to accept is full (another user
// flooding it) refuses a connect at once with EAGAIN; the client tries
// again until the daemon catches up, instead of reporting it gone.
func TestDialWaitsForAFullAcceptQueue(t *testing.T) {
	path := filepath.Join(brokertest.ShortDir(t), "brokerd.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), path)
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	// Fill the queue: nobody accepts yet.
	full := false
	for range 64 {
		c, err := net.Dial("unix", path)
		if errors.Is(err, syscall.EAGAIN) {
			full = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	if !full {
		t.Fatal("the accept queue never filled")
	}
	// The daemon catches up a little later, and serves from then on.
	go func() {
		time.Sleep(100 * time.Millisecond)
		s := grpc.NewServer()
		brokerv1.RegisterBrokerServiceServer(s, &brokertest.FakeBroker{})
		_ = s.Serve(l)
	}()
	c, err := Dial(path)
	if err != nil {
		t.Fatalf("Dial with a full accept queue: %v", err)
	}
	defer c.Close()
	if _, err := c.ListTenants(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// secretRequest asks to store secret as app's client secret.
func secretRequest(app, secret string) *brokerv1.SetCredentialRequest {
	return &brokerv1.SetCredentialRequest{App: app, Credential: &brokerv1.SetCredentialRequest_ClientSecret{ClientSecret: secret}}
}
