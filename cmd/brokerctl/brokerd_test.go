package main

import (
	"path/filepath"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// serveWorld runs brokerd in this process over w's configuration: the core
// with real MSAL clients against w's fake Entra ID, started, and the gRPC
// server on a real Unix socket, whose path it returns.
func serveWorld(t *testing.T, w *brokertest.World) string {
	t.Helper()
	b := w.NewBroker(t, broker.Options{})
	path := filepath.Join(brokertest.ShortDir(t), "brokerd.sock")
	l, err := server.Listen(path, server.OwnerOnly)
	if err != nil {
		t.Fatal(err)
	}
	gs := server.New(b, nil)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	b.Start()
	return path
}
