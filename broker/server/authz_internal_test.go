package server

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

func TestHandlerPanicBecomesInternal(t *testing.T) {
	var logs strings.Builder
	a := &authorizer{audit: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: &Peer{Caller: broker.Caller{UID: 0}}})
	_, err := a.unary(ctx, &brokerv1.SetCredentialRequest{App: "a", ClientSecret: "panic-secret-value"},
		&grpc.UnaryServerInfo{FullMethod: brokerService + "SetCredential"},
		func(context.Context, any) (any, error) { panic("boom: panic-secret-value") })
	if status.Code(err) != codes.Internal || strings.Contains(err.Error(), "panic-secret-value") {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(logs.String(), "handler panicked") || strings.Contains(logs.String(), "panic-secret-value") {
		t.Errorf("log:\n%s", logs.String())
	}
}

func TestUnknownBrokerMethodDenied(t *testing.T) {
	var logs strings.Builder
	a := &authorizer{audit: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: &Peer{Caller: broker.Caller{UID: 0}}})
	err := a.stream(nil, fakeStream{ctx: ctx}, &grpc.StreamServerInfo{FullMethod: brokerService + "WatchEverything"},
		func(any, grpc.ServerStream) error { t.Error("handler ran"); return nil })
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(logs.String(), "allowed=false") {
		t.Errorf("err = %v, log %s", err, logs.String())
	}
	// Without peer credentials nothing in BrokerService is reachable.
	_, err = a.unary(context.Background(), &brokerv1.ListTenantsRequest{}, &grpc.UnaryServerInfo{FullMethod: brokerService + "ListTenants"},
		func(context.Context, any) (any, error) { t.Error("handler ran"); return nil, nil })
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("no peer: %v", err)
	}
}

// fakeStream is a server stream that has only a context; the denied
// handler never touches the stream.
type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }
