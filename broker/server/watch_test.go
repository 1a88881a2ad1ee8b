package server_test

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeclock"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// recv is the stream's next event, within a deadline that only keeps a
// broken build from hanging.
func recv(t *testing.T, st grpc.ServerStreamingClient[brokerv1.WatchTokenResponse]) *brokerv1.WatchTokenResponse {
	t.Helper()
	type res struct {
		ev  *brokerv1.WatchTokenResponse
		err error
	}
	ch := make(chan res, 1)
	go func() { ev, err := st.Recv(); ch <- res{ev, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Recv: %v", r.err)
		}
		return r.ev
	case <-time.After(30 * time.Second):
		t.Fatal("no event on the stream")
		return nil
	}
}

func recvToken(t *testing.T, st grpc.ServerStreamingClient[brokerv1.WatchTokenResponse]) *brokerv1.GetTokenResponse {
	t.Helper()
	ev := recv(t, st)
	if ev.GetToken() == nil {
		t.Fatalf("event %v, want a token", ev)
	}
	return ev.GetToken()
}

// nextRefresh is when the broker next acquires tenant0's token.
func (s *stack) nextRefresh(t *testing.T) time.Time {
	t.Helper()
	for _, ts := range s.b.ListTenants() {
		if ts.Name == "tenant0" {
			return ts.NextRefresh
		}
	}
	t.Fatal("no tenant0")
	return time.Time{}
}

// Over gRPC on a Unix socket: the current token at once, a new token
// (expiring later) after each refresh, an error event with GetToken's code
// when the IdP fails while the stream stays open, and a token again after
// recovery.
func TestWatchTokenStream(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(time.Now())
	s := newStack(t, stackConfig{tenants: 1, clock: clock, lifetime: time.Minute, top: []string{`min_valid = "10s"`}})
	st, err := s.c.WatchToken(ctx(t), "tenant0", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	prev := recvToken(t, st)
	if got, err := s.c.GetToken(ctx(t), "tenant0", nil, 0); err != nil || got.GetAccessToken() != prev.GetAccessToken() {
		t.Fatalf("first event is not the token GetToken returns (%v)", err)
	}
	if prev.GetTenantId() != tenantID(0) || prev.GetTokenType() != "Bearer" {
		t.Errorf("first token: tenant %s, type %s", prev.GetTenantId(), prev.GetTokenType())
	}
	next := func(what string) {
		t.Helper()
		tok := recvToken(t, st)
		if tok.GetAccessToken() == prev.GetAccessToken() || !tok.GetExpiresAt().AsTime().After(prev.GetExpiresAt().AsTime()) {
			t.Fatalf("%s: token expiring %v after one expiring %v, want a new one expiring later", what,
				tok.GetExpiresAt().AsTime(), prev.GetExpiresAt().AsTime())
		}
		if c, err := entratest.Claims(tok.GetAccessToken()); err != nil || c["tid"] != tenantID(0) {
			t.Errorf("%s: claims %v, %v", what, c, err)
		}
		prev = tok
	}
	for _, what := range []string{"first refresh", "second refresh"} {
		clock.Set(s.nextRefresh(t))
		next(what)
	}

	s.idp.SetFault(tenantID(0), &entratest.Fault{Status: 503})
	clock.Set(s.nextRefresh(t))
	ev := recv(t, st)
	if e := ev.GetError(); e == nil || codes.Code(e.GetCode()) != codes.Unavailable || !strings.Contains(e.GetMessage(), "next attempt at") {
		t.Fatalf("event after a failed refresh: %v, want an UNAVAILABLE error event", ev)
	}
	s.idp.SetFault(tenantID(0), nil)
	clock.Set(s.nextRefresh(t))
	next("after recovery")
	if strings.Contains(s.logs.String(), prev.GetAccessToken()) {
		t.Error("a watched token is in the log")
	}
}

// watchers counts the goroutines serving a watch, in the broker or the
// server.
func watchers() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "tokenbroker/broker.(*Broker).WatchToken") || strings.Contains(g, "server.(*service).WatchToken") {
			n++
		}
	}
	return n
}

// A client that cancels its watch, or closes its connection, frees the
// stream: no goroutine of it is left in brokerd.
//
// Not parallel: it counts every watch in the process.
func TestWatchTokenReleasedOnDisconnect(t *testing.T) {
	s := newStack(t, stackConfig{tenants: 1})
	if n := watchers(); n != 0 {
		t.Fatalf("%d watches before the test", n)
	}
	c2, err := client.Dial(s.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	cctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st1, err := s.c.WatchToken(cctx, "tenant0", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := c2.WatchToken(context.Background(), "tenant0", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	recvToken(t, st1)
	recvToken(t, st2)
	if n := watchers(); n < 2 {
		t.Fatalf("%d goroutines serve the two watches; the count misses them", n)
	}

	cancel()
	c2.Close()
	brokertest.WaitFor(t, "every watch to end", func() bool { return watchers() == 0 })
	if _, err := st1.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after cancel: %v, want CANCELED", err)
	}
	// The server still serves.
	if _, err := s.c.GetToken(ctx(t), "tenant0", nil, 0); err != nil {
		t.Fatal(err)
	}
}

// A watch is authorized like GetToken: the request's size limits and an
// unknown tenant end the stream with GetToken's status, audited as
// WatchToken, and nothing is sent.
func TestWatchTokenRefusals(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackConfig{tenants: 1})
	for _, tt := range []struct {
		tenant string
		scopes []string
		code   codes.Code
		msg    string
	}{
		{strings.Repeat("x", 300), nil, codes.InvalidArgument, "limits.max_tenant_bytes"},
		{"tenant0", make([]string, 9), codes.InvalidArgument, "limits.max_scopes"},
		{"tenant\x1b[0m", nil, codes.InvalidArgument, "not printable"},
		{"no-such-tenant", nil, codes.NotFound, "not configured"},
		{"tenant0", []string{"https://evil.example/.default"}, codes.PermissionDenied, "not allowed"},
	} {
		st, err := s.c.WatchToken(ctx(t), tt.tenant, tt.scopes, 0)
		if err == nil {
			var ev *brokerv1.WatchTokenResponse
			ev, err = st.Recv()
			if ev != nil {
				t.Errorf("%.20q: event %v sent before the refusal", tt.tenant, ev)
			}
		}
		if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
			t.Errorf("%.20q: %v, want %v with %q", tt.tenant, err, tt.code, tt.msg)
		}
	}
	brokertest.WaitFor(t, "the audit lines", func() bool {
		return strings.Contains(s.logs.String(), `rpc=WatchToken tenant=no-such-tenant`)
	})
	if strings.Contains(s.logs.String(), strings.Repeat("x", 300)) || strings.Contains(s.logs.String(), "\x1b") {
		t.Error("a refused tenant name reached the log")
	}
}

// A graceful stop ends every watch with UNAVAILABLE instead of waiting for
// streams that never end by themselves.
func TestWatchTokenEndsOnGracefulStop(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackConfig{tenants: 1})
	st, err := s.c.WatchToken(ctx(t), "tenant0", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	recvToken(t, st)
	stopped := make(chan struct{})
	go func() { s.srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("GracefulStop waits for the watch")
	}
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("Recv after the stop: %v, want UNAVAILABLE, shutting down", err)
	}
}
