package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// Reloader reads the configuration file again and applies it: brokerd's
// reload, shared with SIGHUP. It returns the file it read.
type Reloader func(ctx context.Context) (path string, s broker.ReloadSummary, err error)

// WithReloader serves Reload with r; without it Reload is refused, as
// brokerd --dev has no configuration file.
func WithReloader(r Reloader) Option {
	return func(s *Server) { s.reload = r }
}

// Reload reloads the configuration. A configuration error (not a
// *broker.Error) names the file, line and key; it is for an admin, the
// only caller the authorizer lets through.
func (s *service) Reload(ctx context.Context, _ *brokerv1.ReloadRequest) (*brokerv1.ReloadResponse, error) {
	if s.reload == nil {
		return nil, status.Error(codes.FailedPrecondition, "this brokerd has no configuration file to reload (brokerd --dev)")
	}
	path, sum, err := s.reload(ctx)
	if err != nil {
		if be := (*broker.Error)(nil); errors.As(err, &be) {
			return nil, toStatus(err)
		}
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &brokerv1.ReloadResponse{
		ConfigPath:       path,
		AddedTenants:     sum.Added,
		RemovedTenants:   sum.Removed,
		UnchangedTenants: uint32(sum.Unchanged),
		Generation:       sum.Generation,
	}, nil
}
