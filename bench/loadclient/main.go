// Command loadclient makes cached GetToken or health Check calls to a broker
// on a Unix socket from a process of its own, so that `make bench` can count
// the allocations of the server side alone (runtime.MemStats in the serving
// process) without the client's allocations mixed in.
//
// Protocol, on stdin and stdout, so the serving process can read its
// counters exactly around the measured calls:
//
//	loadclient connects and makes -warmup calls, then prints "ready";
//	it waits for a line on stdin, makes -n calls, prints "done";
//	it waits for stdin to close and exits (closing its connection only
//	after the serving process has read its counters).
//
// Usage: loadclient -socket PATH -rpc gettoken|health [-tenant T] [-n N]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadclient:", err)
		os.Exit(1)
	}
}

func run() error {
	socket := flag.String("socket", "", "broker's Unix socket")
	rpc := flag.String("rpc", "gettoken", "gettoken or health")
	tenant := flag.String("tenant", "tenant0", "tenant for GetToken")
	n := flag.Int("n", 20000, "measured calls")
	warmup := flag.Int("warmup", 500, "calls before the measured ones")
	flag.Parse()

	conn, err := grpc.NewClient("unix://"+*socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := context.Background()
	var call func() error
	switch *rpc {
	case "gettoken":
		bc, req := brokerv1.NewBrokerServiceClient(conn), &brokerv1.GetTokenRequest{Tenant: *tenant}
		call = func() error { _, err := bc.GetToken(ctx, req); return err }
	case "health":
		hc, req := healthpb.NewHealthClient(conn), &healthpb.HealthCheckRequest{}
		call = func() error { _, err := hc.Check(ctx, req); return err }
	default:
		return fmt.Errorf("-rpc %q: want gettoken or health", *rpc)
	}

	loop := func(k int) error {
		for range k {
			if err := call(); err != nil {
				return err
			}
		}
		return nil
	}
	in := bufio.NewReader(os.Stdin)
	if err := loop(*warmup); err != nil {
		return err
	}
	fmt.Println("ready")
	if _, err := in.ReadString('\n'); err != nil {
		return fmt.Errorf("waiting for go: %w", err)
	}
	if err := loop(*n); err != nil {
		return err
	}
	fmt.Println("done")
	_, err = io.Copy(io.Discard, in)
	return err
}
