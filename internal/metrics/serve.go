package metrics

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/tokenbroker/tokenbroker/broker/server"
)

// maxConns bounds the endpoint's open connections: a scraper needs one.
const maxConns = 8

// Listen opens the endpoint's address: unix:/path, a Unix socket made as
// brokerd's own (server.Listen: 0600, or 0660 of group gid, in a directory
// only brokerd's user and root control), or HOST:PORT where HOST is a
// loopback address or localhost (127.0.0.1). Any other host is refused:
// the endpoint has no authentication.
func Listen(addr string, gid int) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if !filepath.IsAbs(path) {
			return nil, fmt.Errorf("--metrics-listen %s: the socket path must be absolute, e.g. unix:/run/brokerd/metrics.sock", addr)
		}
		l, err := server.Listen(path, gid)
		if err != nil {
			return nil, fmt.Errorf("--metrics-listen: %w", err)
		}
		return l, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %q: want 127.0.0.1:PORT, [::1]:PORT, localhost:PORT or unix:/path", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("--metrics-listen %q: the port must be a number from 0 to 65535", addr)
	}
	if host == "localhost" {
		host = "127.0.0.1" // not whatever a resolver says localhost is
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() || ip.Zone() != "" {
		return nil, fmt.Errorf("--metrics-listen %q: only a loopback address (127.0.0.1:PORT, [::1]:PORT, localhost:PORT) or unix:/path is allowed: the endpoint has no authentication", addr)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen: %w", err)
	}
	return l, nil
}

// Server returns the HTTP server of the endpoint: GET /metrics and nothing
// else (404), with timeouts on every phase of a request. Serve it on a
// listener from Listen with Serve.
func (m *Metrics) Server(log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 2,
		Timeout:             10 * time.Second,
	}))
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Serve serves srv on l, at most maxConns connections at a time, until
// srv is closed.
func Serve(srv *http.Server, l net.Listener) error {
	err := srv.Serve(netutil.LimitListener(l, maxConns))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
