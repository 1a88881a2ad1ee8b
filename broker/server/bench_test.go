package server_test

import (
	"context"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// The benchmarks here are the Go-benchmark view of the hot path, for
// profiling (-cpuprofile, -memprofile). `make bench` (./bench) is the suite
// that compares GetToken with the health Check in one run and prints the
// table.

// benchConns is how many gRPC connections the parallel benchmarks spread
// their goroutines over.
const benchConns = 4

// benchStack is a warm broker on a real socket and n raw gRPC connections
// to it, so GetToken and the health Check (the floor: gRPC itself) are
// measured on the same server and socket.
func benchStack(b *testing.B, n int) []*grpc.ClientConn {
	s := newStack(b, stackConfig{tenants: 1})
	conns := make([]*grpc.ClientConn, n)
	for i := range conns {
		conn, err := grpc.NewClient("unix://"+s.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		// The first call waits for the prefetch and opens the connection.
		if _, err := brokerv1.NewBrokerServiceClient(conn).GetToken(context.Background(), &brokerv1.GetTokenRequest{Tenant: "tenant0"}); err != nil {
			b.Fatal(err)
		}
		conns[i] = conn
	}
	return conns
}

// BenchmarkGetTokenCached is one client calling GetToken for a cached token.
func BenchmarkGetTokenCached(b *testing.B) {
	bc := brokerv1.NewBrokerServiceClient(benchStack(b, 1)[0])
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
	hc := healthpb.NewHealthClient(benchStack(b, 1)[0])
	req := &healthpb.HealthCheckRequest{}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := hc.Check(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// runParallel runs call from 32 goroutines per GOMAXPROCS (64 on two
// cores), spread over benchConns connections.
func runParallel(b *testing.B, call func(*grpc.ClientConn) func() error) {
	conns := benchStack(b, benchConns)
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		f := call(conns[int(next.Add(1))%len(conns)])
		for pb.Next() {
			if err := f(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGetTokenCachedParallel is many callers on a few connections.
func BenchmarkGetTokenCachedParallel(b *testing.B) {
	runParallel(b, func(conn *grpc.ClientConn) func() error {
		bc, req := brokerv1.NewBrokerServiceClient(conn), &brokerv1.GetTokenRequest{Tenant: "tenant0"}
		return func() error { _, err := bc.GetToken(context.Background(), req); return err }
	})
}

// BenchmarkHealthCheckParallel is its baseline.
func BenchmarkHealthCheckParallel(b *testing.B) {
	runParallel(b, func(conn *grpc.ClientConn) func() error {
		hc, req := healthpb.NewHealthClient(conn), &healthpb.HealthCheckRequest{}
		return func() error { _, err := hc.Check(context.Background(), req); return err }
	})
}
