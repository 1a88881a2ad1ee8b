//go:build linux

// The second caller changes its credentials with setresuid(2), which macOS lacks.

package server_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/version"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// GetVersion answers any connected caller, even one on no tenant's allow
// list, with how brokerd was built. It is audited once per connection, and
// a non-admin's lines are held to limits.audit_denials_per_minute per uid,
// the rest counted when the server stops.
func TestGetVersion(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	logs := &brokertest.LogBuffer{}
	log := brokertest.DebugLogger(logs)
	b := w.NewBroker(t, broker.Options{Logger: log}, "[limits]\naudit_denials_per_minute = 2")
	dir := brokertest.ShortDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "s", "brokerd.sock")
	l, err := server.Listen(socket, nobodyID)
	if err != nil {
		t.Fatal(err)
	}
	gs := server.New(b, log)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)

	want := version.Current()
	check := func(who string, v *brokerv1.GetVersionResponse, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s's GetVersion: %v", who, err)
		}
		if v.GetVersion() != want.Version || v.GetGoVersion() != want.GoVersion || v.GetPlatform() != want.Platform ||
			v.GetCommit() != want.Commit || v.GetModified() != want.Modified {
			t.Errorf("%s's GetVersion = %v, want %+v", who, v, want)
		}
	}

	admin, err := client.Dial(socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	for range 3 {
		v, err := admin.GetVersion(ctx(t))
		check("root", v, err)
	}

	// Four connections of uid 65534, two calls on each.
	for range 4 {
		conn, err := grpc.NewClient("passthrough:///brokerd", grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return dialAs(socket, nobodyID, nobodyID) }))
		if err != nil {
			t.Fatal(err)
		}
		nobody := brokerv1.NewBrokerServiceClient(conn)
		for range 2 {
			v, err := nobody.GetVersion(ctx(t), &brokerv1.GetVersionRequest{})
			check("uid 65534", v, err)
		}
		conn.Close()
	}
	gs.Stop()

	out := logs.String()
	if n := strings.Count(out, "msg=audit rpc=GetVersion tenant=\"\" uid=0 "); n != 1 {
		t.Errorf("%d GetVersion audit lines for root's one connection, want 1:\n%s", n, out)
	}
	if n := strings.Count(out, "msg=audit rpc=GetVersion tenant=\"\" uid=65534 "); n != 2 {
		t.Errorf("%d GetVersion audit lines for uid 65534, want 2 (the limit):\n%s", n, out)
	}
	if !strings.Contains(out, `msg="2 more GetVersion calls from uid 65534"`) {
		t.Errorf("no summary of the 2 held-back connections' calls:\n%s", out)
	}
}
