package server

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/tokenbroker/tokenbroker/broker"
)

// What one connection may make the server hold before and between
// messages. A caller of this daemon sends a few hundred bytes of headers
// and one small message per call, on one connection at a time.
const (
	// maxHeaderListBytes bounds the headers of one call (gRPC's default is
	// 16 MiB). A call's headers are its method, content type, user agent
	// and deadline: well under 1 KiB.
	maxHeaderListBytes = 8 << 10
	// maxStreamsPerConn bounds the calls in progress on one connection
	// (gRPC's default is unbounded). brokerctl makes one call at a time;
	// a Go program sharing a client across goroutines rarely has more
	// than a few GetToken calls waiting for the same acquisition.
	maxStreamsPerConn = 16
	// windowBytes is the HTTP/2 flow-control window of each stream and
	// connection: what a caller can send before the server reads it. A
	// fixed window also turns off gRPC's bandwidth probing, which would
	// grow it to 16 MiB per connection; 64 KiB is the least gRPC takes.
	windowBytes = 64 << 10
	// handshakeTimeout bounds the HTTP/2 handshake of a new connection
	// (gRPC's default is 120s): a local client sends its preface at once,
	// and a connection that sends nothing holds one of its uid's slots
	// only this long.
	handshakeTimeout = 5 * time.Second
	// minPingInterval is the least time between a client's keepalive
	// pings, which it may send only during a call. More frequent pings
	// get the connection closed (GOAWAY too_many_pings), so a caller
	// cannot keep the server answering pings.
	minPingInterval = time.Minute
)

// transportLimits are the gRPC server options that apply l, and the
// constants above, to every connection.
func transportLimits(l broker.Limits) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.MaxRequestBytes),
		grpc.MaxHeaderListSize(maxHeaderListBytes),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.InitialWindowSize(windowBytes),
		grpc.InitialConnWindowSize(windowBytes),
		grpc.ConnectionTimeout(handshakeTimeout),
		// A connection with no call in progress for IdleTimeout is sent
		// GOAWAY and closed, freeing its uid's slot and descriptor.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.IdleTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: minPingInterval, PermitWithoutStream: false}),
	}
}
