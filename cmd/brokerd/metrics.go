package main

import (
	"log/slog"
	"net"
	"net/http"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/internal/metrics"
)

// metricsEndpoint is --metrics-listen; nil, when it is off, does nothing.
type metricsEndpoint struct {
	m   *metrics.Metrics
	l   net.Listener
	srv *http.Server
}

// openMetrics listens on --metrics-listen, before the broker starts, so a
// bad address stops brokerd at once.
func openMetrics(addr string, gid int) (*metricsEndpoint, error) {
	if addr == "" {
		return nil, nil
	}
	l, err := metrics.Listen(addr, gid)
	if err != nil {
		return nil, err
	}
	return &metricsEndpoint{m: metrics.New(), l: l}, nil
}

// brokerObserver is the broker's observer: nil when metrics are off.
func (e *metricsEndpoint) brokerObserver() broker.Observer {
	if e == nil {
		return nil
	}
	return e.m
}

// serverOptions are the server's options for metrics.
func (e *metricsEndpoint) serverOptions() []server.Option {
	if e == nil {
		return nil
	}
	return []server.Option{server.WithObserver(e.m)}
}

// serve starts serving /metrics of b and gs.
func (e *metricsEndpoint) serve(b *broker.Broker, gs *server.Server, log *slog.Logger) {
	if e == nil {
		return
	}
	e.m.Watch(b, gs.OpenConnections)
	e.srv = e.m.Server(log)
	go func() {
		if err := metrics.Serve(e.srv, e.l); err != nil {
			log.Error("the metrics endpoint stopped", "address", e.l.Addr().String(), "error", err)
		}
	}()
	log.Info("metrics serving", "address", e.l.Addr().String())
}

// close stops the endpoint.
func (e *metricsEndpoint) close() {
	switch {
	case e == nil:
	case e.srv != nil:
		e.srv.Close()
	default:
		e.l.Close()
	}
}

// reloaded counts a configuration reload, applied or refused.
func (e *metricsEndpoint) reloaded(applied bool) {
	if e != nil {
		e.m.Reloaded(applied)
	}
}
