//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// The app every benchmark uses. The secret is a fake one for the fake IdP.
const (
	appName  = "partner"
	clientID = "0a0a0a0a-0000-4000-8000-00000000a001"
	secret   = "bench-secret-Q~abcdefghijklmnopqrstuvwxyz0123"
)

// tenantName and tenantID name the i-th benchmark tenant.
func tenantName(i int) string { return fmt.Sprintf("tenant%d", i) }
func tenantID(i int) string   { return fmt.Sprintf("%08x-0000-4000-8000-%012x", 0x7e000000+i, i) }

// newIdP starts a fake Entra ID with the benchmark app and tenants
// tenant0..n-1, every one consented.
func newIdP(n int) (*entratest.Server, error) {
	idp, err := entratest.NewServer()
	if err != nil {
		return nil, err
	}
	idp.AddApp(clientID, secret)
	for i := range n {
		idp.AddTenant(entratest.Tenant{ID: tenantID(i), ConsentedApps: []string{clientID}})
	}
	return idp, nil
}

// configTOML is a brokerd configuration for tenant0..n-1 against idp.
// extra holds more top-level keys (e.g. prefetch_rate), one per line.
func configTOML(idpURL string, n int, extra ...string) string {
	var doc strings.Builder
	fmt.Fprintf(&doc, "authority_host = %q\nkeystore = \"memory\"\n", idpURL)
	for _, kv := range extra {
		doc.WriteString(kv + "\n")
	}
	fmt.Fprintf(&doc, "[apps.%s]\nclient_id = %q\n", appName, clientID)
	for i := range n {
		fmt.Fprintf(&doc, "[tenants.%s]\nid = %q\napp = %q\n", tenantName(i), tenantID(i), appName)
	}
	return doc.String()
}

// stack is the whole broker in this process, as brokerd assembles it: the
// fake Entra ID over TLS, the core with real MSAL clients and an in-memory
// keystore holding the secret, and the gRPC server on a real Unix socket.
type stack struct {
	idp    *entratest.Server
	b      *broker.Broker
	gs     *server.Server
	dir    string
	socket string
}

// newStack builds a stack with n tenants. With prefetch it starts the
// broker (every tenant acquired in the background); otherwise the cache
// stays cold until the first GetToken.
func newStack(n int, prefetch bool) (_ *stack, err error) {
	s := &stack{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	if s.idp, err = newIdP(n); err != nil {
		return nil, err
	}
	cfg, err := broker.ParseConfig("bench.toml", []byte(configTOML(s.idp.URL(), n, "prefetch_rate = 10000", "prefetch_concurrency = 64")))
	if err != nil {
		return nil, err
	}
	store := keystore.NewMemory()
	if err := store.Set(context.Background(), clientID, keystore.NewSecret(secret)); err != nil {
		return nil, err
	}
	// Audit and other logs are formatted as brokerd formats them (info
	// level, text) and thrown away, so that a log line on the hot path
	// would cost here what it costs in brokerd.
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if s.b, err = broker.New(cfg, broker.Options{Store: store, HTTPClient: s.idp.Client(), Logger: log}); err != nil {
		return nil, err
	}
	// Unix socket paths are limited to 107 bytes: keep the directory short.
	if s.dir, err = os.MkdirTemp("", "bb"); err != nil {
		return nil, err
	}
	s.socket = filepath.Join(s.dir, "brokerd.sock")
	l, err := server.Listen(s.socket, server.OwnerOnly)
	if err != nil {
		return nil, err
	}
	s.gs = server.New(s.b, log)
	go s.gs.Serve(l)
	if prefetch {
		s.b.Start()
	}
	return s, nil
}

// dial opens a gRPC connection to the stack's socket and waits until it
// is ready, so that connection set-up is not part of any measurement.
func (s *stack) dial(ctx context.Context) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+s.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	conn.Connect()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			conn.Close()
			return nil, fmt.Errorf("connecting to %s: %v", s.socket, ctx.Err())
		}
	}
	return conn, nil
}

func (s *stack) close() {
	if s.gs != nil {
		s.gs.Stop()
	}
	if s.b != nil {
		s.b.Close()
	}
	if s.idp != nil {
		s.idp.Close()
	}
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
}
