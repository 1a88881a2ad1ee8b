package client

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// WatchToken follows tenant's token (arguments as for GetToken; minValid
// applies to the first token): the stream's first event is the current
// token, or the error of getting it; then each new token as brokerd
// refreshes it, and an error event (a gRPC code and brokerd's message)
// whenever an acquisition fails, after which the watch goes on. Recv
// returns the events until ctx is done, or an error when brokerd refuses
// the request (the errors of GetToken) or stops. Cancel ctx to end the
// watch.
func (c *Client) WatchToken(ctx context.Context, tenant string, scopes []string, minValid time.Duration) (grpc.ServerStreamingClient[brokerv1.WatchTokenResponse], error) {
	if minValid < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "minimum validity %v is negative", minValid)
	}
	req := &brokerv1.WatchTokenRequest{Tenant: tenant, Scopes: scopes}
	if minValid > 0 {
		req.MinValid = durationpb.New(minValid)
	}
	return c.api.WatchToken(ctx, req)
}
