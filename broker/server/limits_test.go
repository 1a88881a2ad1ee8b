package server_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeclock"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// rawClient is a gRPC client on a connection of its own, without the
// typed client's checks, so the server's own checks decide.
func rawClient(t *testing.T, socket string) brokerv1.BrokerServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return brokerv1.NewBrokerServiceClient(conn)
}

// HTTP/2 frame types and flags the raw connection below handles.
const (
	h2Settings = 0x4
	h2Ping     = 0x6
	h2GoAway   = 0x7
	h2Ack      = 0x1
)

// h2Idle opens a bare HTTP/2 connection to socket: the client preface and
// an empty SETTINGS frame, then nothing but the acknowledgements the
// protocol requires. It returns the types of the frames the server sent
// until it closed the connection, or an error if it had not within
// deadline.
func h2Idle(socket string, deadline time.Duration) ([]byte, error) {
	c, err := net.Dial("unix", socket)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(deadline)); err != nil {
		return nil, err
	}
	frame := func(typ, flags byte, payload []byte) []byte {
		h := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags, 0, 0, 0, 0}
		return append(h, payload...)
	}
	if _, err := c.Write(append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(h2Settings, 0, nil)...)); err != nil {
		return nil, err
	}
	var types []byte
	for {
		var h [9]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return types, nil
			}
			return types, err
		}
		payload := make([]byte, int(binary.BigEndian.Uint32(append([]byte{0}, h[:3]...))))
		if _, err := io.ReadFull(c, payload); err != nil {
			return types, err
		}
		typ, flags := h[3], h[4]
		types = append(types, typ)
		var reply []byte
		switch {
		case typ == h2Settings && flags&h2Ack == 0:
			reply = frame(h2Settings, h2Ack, nil)
		case typ == h2Ping && flags&h2Ack == 0:
			reply = frame(h2Ping, h2Ack, payload)
		}
		if reply != nil {
			if _, err := c.Write(reply); err != nil {
				return types, err
			}
		}
	}
}

// A connection with no call in progress for limits.idle_timeout is sent
// GOAWAY and closed by the server, freeing its descriptor and its uid's
// slot.
func TestIdleConnectionClosed(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackConfig{tenants: 1, top: []string{"[limits]", `idle_timeout = "1s"`}})
	types, err := h2Idle(s.socket, 30*time.Second)
	if err != nil {
		t.Fatalf("the server did not close an idle connection: %v (frames %v)", err, types)
	}
	if !bytes.Contains(types, []byte{h2GoAway}) {
		t.Errorf("the connection was closed without GOAWAY (frames %v)", types)
	}
}

// Denials are audited at most limits.audit_denials_per_minute times per
// uid and minute; the rest are counted in one summary line when the
// minute ends, and on Stop. Grants are all audited.
func TestAuditDenialRateLimit(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Now())
	s := newStack(t, stackConfig{tenants: 1, clock: clock, top: []string{"[limits]", "audit_denials_per_minute = 3"}})
	denied := rawClient(t, s.socket)
	long := strings.Repeat("x", 300)
	for i := range 50 {
		_, err := denied.GetToken(ctx(t), &brokerv1.GetTokenRequest{Tenant: long})
		wantStatus(t, err, codes.InvalidArgument, "limits.max_tenant_bytes (256)")
		if i%5 == 0 {
			// A grant on a connection of its own: one audit line each.
			if _, err := rawClient(t, s.socket).GetToken(ctx(t), &brokerv1.GetTokenRequest{Tenant: "tenant0"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	count := func(sub string) int { return strings.Count(s.logs.String(), sub) }
	if n := count("msg=audit rpc=GetToken tenant=\"\" uid=0"); n != 3 {
		t.Errorf("%d denial lines, want 3:\n%s", n, s.logs.String())
	}
	if n := count("rpc=GetToken tenant=tenant0 uid=0"); n != 10 {
		t.Errorf("%d grant lines, want all 10", n)
	}
	if strings.Contains(s.logs.String(), long) {
		t.Error("the log holds the oversized tenant")
	}
	if count("more denials") != 0 {
		t.Fatal("summary before the minute ended")
	}
	clock.Advance(time.Minute)
	brokertest.WaitFor(t, "the summary line", func() bool { return count(`msg="47 more denials from uid 0"`) == 1 })

	// A new minute: three more lines, and Stop reports the one held back.
	for range 4 {
		_, err := denied.GetToken(ctx(t), &brokerv1.GetTokenRequest{Tenant: long})
		wantStatus(t, err, codes.InvalidArgument)
	}
	s.srv.Stop()
	if n := count("msg=audit rpc=GetToken tenant=\"\" uid=0"); n != 6 {
		t.Errorf("%d denial lines, want 6", n)
	}
	if count(`msg="1 more denial from uid 0"`) != 1 {
		t.Errorf("Stop did not report the held-back denial:\n%s", s.logs.String())
	}
}
