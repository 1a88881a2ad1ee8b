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
	"google.golang.org/protobuf/proto"

	"github.com/tokenbroker/tokenbroker/broker"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

func TestHandlerPanicBecomesInternal(t *testing.T) {
	var logs strings.Builder
	a := &authorizer{audit: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: &Peer{Caller: broker.Caller{UID: 0}}})
	_, err := a.unary(ctx, &brokerv1.SetCredentialRequest{App: "a", Credential: &brokerv1.SetCredentialRequest_ClientSecret{ClientSecret: "panic-secret-value"}},
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

// WatchToken is authorized on its request, the first message its handler
// reads: a refused request never reaches the handler, and a handler cannot
// send before its request is authorized.
func TestWatchTokenAuthorizedOnItsRequest(t *testing.T) {
	var logs strings.Builder
	lim := broker.Limits{MaxTenantBytes: 8, MaxScopes: 1, MaxScopeBytes: 64}
	a := &authorizer{limits: lim, audit: slog.New(slog.NewTextHandler(&logs, nil))}
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: &Peer{Caller: broker.Caller{UID: 0}}})
	info := &grpc.StreamServerInfo{FullMethod: brokerv1.BrokerService_WatchToken_FullMethodName, IsServerStream: true}

	req := &brokerv1.WatchTokenRequest{Tenant: "much-too-long"}
	err := a.stream(nil, &reqStream{fakeStream: fakeStream{ctx: ctx}, req: req}, info, func(_ any, ss grpc.ServerStream) error {
		var m brokerv1.WatchTokenRequest
		if err := ss.RecvMsg(&m); err != nil {
			return err
		}
		t.Error("the handler got a refused request")
		return nil
	})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "limits.max_tenant_bytes") {
		t.Errorf("too long a tenant: %v", err)
	}

	err = a.stream(nil, &reqStream{fakeStream: fakeStream{ctx: ctx}, req: req}, info, func(_ any, ss grpc.ServerStream) error {
		return ss.SendMsg(&brokerv1.WatchTokenResponse{})
	})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("send before the request: %v", err)
	}
}

// reqStream is a fakeStream whose one message is req.
type reqStream struct {
	fakeStream
	req *brokerv1.WatchTokenRequest
}

func (s *reqStream) RecvMsg(m any) error {
	proto.Merge(m.(proto.Message), s.req)
	return nil
}
