package brokertest

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// FakeBroker is a scripted BrokerService for the tests of brokerd's
// clients (broker/client, brokerctl): it records every request and answers
// as its fields say. Set the fields before serving it.
type FakeBroker struct {
	brokerv1.UnimplementedBrokerServiceServer

	// GetResp answers GetToken; nil means a token "token-for-TENANT"
	// that expires in 2030. GetErr, when set, is returned instead;
	// GetBlock makes GetToken wait until the caller gives up.
	GetResp  *brokerv1.GetTokenResponse
	GetErr   error
	GetBlock bool
	// WatchBlock makes WatchToken send nothing until the caller gives up;
	// otherwise it is unimplemented.
	WatchBlock bool
	// Tenants and Apps answer ListTenants, unless ListErr is set.
	Tenants []*brokerv1.TenantStatus
	Apps    []*brokerv1.AppStatus
	ListErr error
	// SetResp answers SetCredential (nil: an empty response), unless
	// SetErr is set; SetBlock makes it wait until the caller gives up.
	SetResp  *brokerv1.SetCredentialResponse
	SetErr   error
	SetBlock bool

	mu      sync.Mutex
	getReqs []*brokerv1.GetTokenRequest
	setReqs []*brokerv1.SetCredentialRequest
	calls   int
}

// GetToken records req and answers as GetResp, GetErr and GetBlock say.
func (b *FakeBroker) GetToken(ctx context.Context, req *brokerv1.GetTokenRequest) (*brokerv1.GetTokenResponse, error) {
	b.mu.Lock()
	b.calls++
	b.getReqs = append(b.getReqs, req)
	b.mu.Unlock()
	switch {
	case b.GetBlock:
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	case b.GetErr != nil:
		return nil, b.GetErr
	case b.GetResp != nil:
		return b.GetResp, nil
	}
	return &brokerv1.GetTokenResponse{
		AccessToken: "token-for-" + req.GetTenant(),
		TokenType:   "Bearer",
		ExpiresAt:   timestamppb.New(time.Unix(1_900_000_000, 0)),
		TenantId:    "11111111-2222-3333-4444-555555555555",
		Scopes:      req.GetScopes(),
	}, nil
}

// WatchToken sends nothing until the caller gives up, if WatchBlock says
// so.
func (b *FakeBroker) WatchToken(req *brokerv1.WatchTokenRequest, st grpc.ServerStreamingServer[brokerv1.WatchTokenResponse]) error {
	if !b.WatchBlock {
		return b.UnimplementedBrokerServiceServer.WatchToken(req, st)
	}
	<-st.Context().Done()
	return status.FromContextError(st.Context().Err()).Err()
}

// ListTenants answers with Tenants and Apps, or ListErr.
func (b *FakeBroker) ListTenants(context.Context, *brokerv1.ListTenantsRequest) (*brokerv1.ListTenantsResponse, error) {
	b.mu.Lock()
	b.calls++
	b.mu.Unlock()
	if b.ListErr != nil {
		return nil, b.ListErr
	}
	return &brokerv1.ListTenantsResponse{Tenants: b.Tenants, Apps: b.Apps}, nil
}

// SetCredential records req and answers as SetResp, SetErr and SetBlock say.
func (b *FakeBroker) SetCredential(ctx context.Context, req *brokerv1.SetCredentialRequest) (*brokerv1.SetCredentialResponse, error) {
	b.mu.Lock()
	b.calls++
	b.setReqs = append(b.setReqs, req)
	b.mu.Unlock()
	if b.SetBlock {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if b.SetErr != nil {
		return nil, b.SetErr
	}
	if b.SetResp != nil {
		return b.SetResp, nil
	}
	return &brokerv1.SetCredentialResponse{}, nil
}

// GetRequests returns the GetToken requests received so far.
func (b *FakeBroker) GetRequests() []*brokerv1.GetTokenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.getReqs)
}

// SetRequests returns the SetCredential requests received so far.
func (b *FakeBroker) SetRequests() []*brokerv1.SetCredentialRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.setReqs)
}

// Calls returns how many calls the FakeBroker has answered.
func (b *FakeBroker) Calls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

// Serve serves srv over gRPC on a Unix socket in a ShortDir until the
// test ends, and returns the socket's path.
func Serve(t testing.TB, srv brokerv1.BrokerServiceServer) string {
	t.Helper()
	path := filepath.Join(ShortDir(t), "brokerd.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	brokerv1.RegisterBrokerServiceServer(s, srv)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return path
}
