package server

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// Observer is told how GetToken calls end and of denied calls, for
// metrics. Its methods are called from many goroutines at once and must
// return quickly. They get no token and no string a caller sent.
type Observer interface {
	// TokenCall is told of each GetToken call's status code, denials
	// included.
	TokenCall(code codes.Code)
	// Denied is told of each BrokerService call the authorizer denied,
	// with the caller's uid.
	Denied(uid uint32)
}

// Option configures New.
type Option func(*Server)

// WithObserver has o told of GetToken calls and denials.
func WithObserver(o Observer) Option {
	return func(s *Server) { s.obs = o }
}

// OpenConnections is the number of callers' connections open now.
func (s *Server) OpenConnections() int { return s.conns.all() }

// observeCall tells the observer how a unary call ended; err is the
// call's error, read when the call returns.
func (a *authorizer) observeCall(method string, err *error) {
	if a.obs != nil && method == brokerv1.BrokerService_GetToken_FullMethodName {
		a.obs.TokenCall(status.Code(*err))
	}
}

// observeDenial tells the observer of a call the authorizer denied.
func (a *authorizer) observeDenial(ctx context.Context, err error) {
	if a.obs == nil || status.Code(err) != codes.PermissionDenied {
		return
	}
	if p := peerOf(ctx); p != nil {
		a.obs.Denied(p.Caller.UID)
	}
}
