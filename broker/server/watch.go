package server

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// WatchToken streams the core's watch: each token as GetToken's response
// (built once per token and shared), each failed acquisition as an error
// event with the status code and message GetToken would fail with. The
// authorizer has checked the request before it gets here.
func (s *service) WatchToken(req *brokerv1.WatchTokenRequest, stream grpc.ServerStreamingServer[brokerv1.WatchTokenResponse]) error {
	minValid, err := minValidOf(req.GetMinValid())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()
	err = s.b.WatchToken(ctx, broker.TokenRequest{Tenant: req.GetTenant(), Scopes: req.GetScopes(), MinValid: minValid, Caller: callerOf(ctx)},
		func(tok *broker.Token, werr *broker.Error) error {
			if tok != nil {
				resp := tok.Memo(tokenResponse).(*brokerv1.GetTokenResponse)
				return stream.Send(&brokerv1.WatchTokenResponse{Event: &brokerv1.WatchTokenResponse_Token{Token: resp}})
			}
			st := status.Convert(toStatus(werr))
			return stream.Send(&brokerv1.WatchTokenResponse{Event: &brokerv1.WatchTokenResponse_Error{
				Error: &brokerv1.WatchTokenError{Code: int32(st.Code()), Message: st.Message()}}})
		})
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		if s.stopping.Err() != nil && stream.Context().Err() == nil {
			return status.Error(codes.Unavailable, "brokerd is shutting down; watch again once it is back")
		}
		return status.FromContextError(ctx.Err()).Err()
	}
	if _, ok := status.FromError(err); ok {
		return err // a failed Send: the stream is gone
	}
	s.auditReloadDenial(stream.Context(), "WatchToken", req.GetTenant(), err)
	return toStatus(err)
}
