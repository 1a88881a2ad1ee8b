//go:build linux

// The callers here change their credentials with setresuid(2), which macOS lacks.

package server_test

import (
	"context"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// nobodyID is the uid and gid of the unprivileged callers below.
const nobodyID = 65534

// requireRoot skips a test that must change its credentials, unless it
// runs in CI, where it fails instead.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test runs as root (it connects as uid 65534)")
		}
		t.Skip("needs root: it connects as uid 65534")
	}
}

// dialAs connects to a Unix socket as uid and gid (with no supplementary
// groups), so that the kernel gives the server those peer credentials. It
// changes the credentials of one OS thread only, which ends with its
// goroutine, never those of the test process.
func dialAs(socket string, uid, gid int) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		for _, call := range [][4]uintptr{
			{unix.SYS_SETGROUPS, 0, 0, 0},
			{unix.SYS_SETRESGID, uintptr(gid), uintptr(gid), uintptr(gid)},
			{unix.SYS_SETRESUID, uintptr(uid), uintptr(uid), uintptr(uid)},
		} {
			if _, _, errno := unix.RawSyscall(call[0], call[1], call[2], call[3]); errno != 0 {
				done <- result{err: errno}
				return
			}
		}
		c, err := net.Dial("unix", socket)
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}

// The credential RPCs over real gRPC on a real Unix socket: the daemon's
// administrator sets a certificate, reads it back, sees it in
// ListTenants and deletes it; a caller of another uid, with access to the
// tenant's tokens, is denied all three and is not told what the app
// authenticates with.
func TestCredentialRPCs(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	store := w.Store(t)
	logs := &brokertest.LogBuffer{}
	log := brokertest.DebugLogger(logs)
	b := w.NewBroker(t, broker.Options{Store: store, Logger: log}, "allow_uids = [65534]")
	dir := brokertest.ShortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "s", "brokerd.sock")
	l, err := server.Listen(socket, nobodyID) // shared with nobody's group
	if err != nil {
		t.Fatal(err)
	}
	gs := server.New(b, log)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	b.Start()
	admin, err := client.Dial(socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	conn, err := grpc.NewClient("passthrough:///brokerd", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return dialAs(socket, nobodyID, nobodyID) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	nobody := brokerv1.NewBrokerServiceClient(conn)

	now := time.Now()
	cert, _, pemData, err := entratest.NewCertificate("tokenbroker test", now.Add(-time.Hour), now.Add(300*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	w.IdP.AddCertificate(w.ClientID, cert)
	setReq := &brokerv1.SetCredentialRequest{App: w.App, Credential: &brokerv1.SetCredentialRequest_CertificatePem{CertificatePem: pemData}}

	// Another uid: tokens yes, administration no.
	if _, err := nobody.GetToken(ctx(t), &brokerv1.GetTokenRequest{Tenant: "tenant0"}); err != nil {
		t.Fatalf("nobody's GetToken: %v", err)
	}
	_, err = nobody.SetCredential(ctx(t), setReq)
	wantStatus(t, err, codes.PermissionDenied, "uid 65534 may not call SetCredential")
	_, err = nobody.GetCredential(ctx(t), &brokerv1.GetCredentialRequest{App: w.App})
	wantStatus(t, err, codes.PermissionDenied, "uid 65534 may not call GetCredential")
	_, err = nobody.DeleteCredential(ctx(t), &brokerv1.DeleteCredentialRequest{App: w.App})
	wantStatus(t, err, codes.PermissionDenied, "uid 65534 may not call DeleteCredential")
	if got := brokertest.StoredSecret(store, w.ClientID); got != w.Secret {
		t.Error("a denied call changed the stored credential")
	}

	resp, err := admin.SetCredential(ctx(t), setReq)
	if err != nil {
		t.Fatal(err)
	}
	c := resp.GetCredential()
	if resp.GetVerifiedWithTenant() != "tenant0" || c.GetKind() != brokerv1.CredentialKind_CREDENTIAL_KIND_CERTIFICATE ||
		c.GetThumbprintSha1() != entratest.Thumbprint(cert) || !c.GetExpiresAt().AsTime().Equal(cert.NotAfter) || c.GetSetAt() == nil {
		t.Errorf("SetCredential = %v", resp)
	}
	got, err := admin.GetCredential(ctx(t), w.App)
	if err != nil || got.GetThumbprintSha256() != c.GetThumbprintSha256() || got.GetKeystore() != "memory" || got.GetSubject() != "CN=tokenbroker test" {
		t.Errorf("GetCredential = %v, %v", got, err)
	}

	_, apps, err := admin.ListTenantsAndApps(ctx(t))
	if err != nil || len(apps) != 1 || apps[0].GetCredential().GetThumbprintSha1() != entratest.Thumbprint(cert) {
		t.Errorf("the administrator's ListTenants: apps %v, %v", apps, err)
	}
	list, err := nobody.ListTenants(ctx(t), &brokerv1.ListTenantsRequest{})
	if err != nil || len(list.GetTenants()) != 1 || len(list.GetApps()) != 1 {
		t.Fatalf("nobody's ListTenants: %v, %v", list, err)
	}
	if cred := list.GetApps()[0].GetCredential(); cred != nil {
		t.Errorf("another uid is shown the app's credential: %v", cred)
	}

	del, err := admin.DeleteCredential(ctx(t), w.App)
	if err != nil || del.GetThumbprintSha1() != entratest.Thumbprint(cert) {
		t.Errorf("DeleteCredential = %v, %v", del, err)
	}
	if _, err := store.Get(context.Background(), w.ClientID); err == nil {
		t.Error("the store still holds the credential")
	}
	_, err = admin.GetCredential(ctx(t), w.App)
	wantStatus(t, err, codes.FailedPrecondition, "no credential stored for app partner")

	text := logs.String()
	if !strings.Contains(text, "msg=audit rpc=SetCredential") || !strings.Contains(text, "uid=65534") {
		t.Errorf("the denied calls are not audited:\n%s", text)
	}
	for rest := pemData; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "PRIVATE KEY" && strings.Contains(text, string(pem.EncodeToMemory(blk))[28:92]) {
			t.Error("the log contains the private key")
		}
	}
}
