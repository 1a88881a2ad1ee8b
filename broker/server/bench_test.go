package server_test

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// benchStack is a warm broker on a real socket and a raw gRPC connection
// to it, so GetToken and the health Check (the floor: gRPC itself) are
// measured on the same server and socket.
func benchStack(b *testing.B) (brokerv1.BrokerServiceClient, healthpb.HealthClient) {
	s := newStack(b, stackConfig{tenants: 1})
	conn, err := grpc.NewClient("unix://"+s.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	bc := brokerv1.NewBrokerServiceClient(conn)
	if _, err := bc.GetToken(context.Background(), &brokerv1.GetTokenRequest{Tenant: "tenant0"}); err != nil {
		b.Fatal(err)
	}
	return bc, healthpb.NewHealthClient(conn)
}

// BenchmarkGetTokenCached is one client calling GetToken for a cached token.
func BenchmarkGetTokenCached(b *testing.B) {
	bc, _ := benchStack(b)
	req := &brokerv1.GetTokenRequest{Tenant: "tenant0"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bc.GetToken(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHealthCheck is the baseline: a health Check on the same server.
func BenchmarkHealthCheck(b *testing.B) {
	_, hc := benchStack(b)
	req := &healthpb.HealthCheckRequest{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := hc.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}
