// Package server is the gRPC adapter of the broker: it serves
// broker.v1.BrokerService, grpc.health.v1 and server reflection over a Unix
// socket, and turns the core's errors into gRPC statuses in one place
// (toStatus).
//
// Security role: the socket it listens on is the daemon's only door. Listen
// creates it owner-only (directory 0700, socket 0600) and never unlinks a
// socket a live daemon answers on. No handler returns or logs a secret or a
// token other than the one GetToken hands its caller.
package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/keystore"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// New returns a gRPC server with BrokerService over b, the health service
// (SERVING) and reflection registered.
func New(b *broker.Broker, log *slog.Logger, opts ...grpc.ServerOption) *grpc.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	gs := grpc.NewServer(opts...)
	brokerv1.RegisterBrokerServiceServer(gs, &service{b: b, log: log})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(brokerv1.BrokerService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	return gs
}

// service implements brokerv1.BrokerServiceServer over the core.
type service struct {
	brokerv1.UnimplementedBrokerServiceServer
	b   *broker.Broker
	log *slog.Logger
}

func (s *service) GetToken(ctx context.Context, req *brokerv1.GetTokenRequest) (*brokerv1.GetTokenResponse, error) {
	var minValid time.Duration
	if mv := req.GetMinValid(); mv != nil {
		if err := mv.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "min_valid: %v", err)
		}
		if minValid = mv.AsDuration(); minValid <= 0 {
			return nil, status.Errorf(codes.InvalidArgument, "min_valid must be positive, got %s", minValid)
		}
	}
	tok, err := s.b.GetToken(ctx, broker.TokenRequest{Tenant: req.GetTenant(), Scopes: req.GetScopes(), MinValid: minValid})
	if err != nil {
		return nil, toStatus(err)
	}
	return &brokerv1.GetTokenResponse{
		AccessToken: tok.AccessToken,
		TokenType:   "Bearer",
		ExpiresAt:   timestamppb.New(tok.ExpiresAt),
		TenantId:    tok.TenantID,
		Scopes:      tok.Scopes,
	}, nil
}

func (s *service) ListTenants(context.Context, *brokerv1.ListTenantsRequest) (*brokerv1.ListTenantsResponse, error) {
	list := s.b.ListTenants()
	resp := &brokerv1.ListTenantsResponse{Tenants: make([]*brokerv1.TenantStatus, 0, len(list))}
	for _, t := range list {
		resp.Tenants = append(resp.Tenants, &brokerv1.TenantStatus{
			Name:        t.Name,
			TenantId:    t.TenantID,
			App:         t.App,
			State:       stateToProto[t.State],
			ExpiresAt:   optionalTime(t.ExpiresAt),
			NextRefresh: optionalTime(t.NextRefresh),
			LastError:   t.LastError,
			Roles:       t.Roles,
			CacheHits:   t.CacheHits,
			CacheMisses: t.CacheMisses,
			IdpRequests: t.IdPRequests,
		})
	}
	return resp, nil
}

func (s *service) SetCredential(ctx context.Context, req *brokerv1.SetCredentialRequest) (*brokerv1.SetCredentialResponse, error) {
	tenant, err := s.b.SetCredential(ctx, req.GetApp(), keystore.NewSecret(req.GetClientSecret()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &brokerv1.SetCredentialResponse{VerifiedWithTenant: tenant}, nil
}

var stateToProto = map[broker.State]brokerv1.TenantState{
	broker.StatePending:      brokerv1.TenantState_TENANT_STATE_PENDING,
	broker.StateReady:        brokerv1.TenantState_TENANT_STATE_READY,
	broker.StateDegraded:     brokerv1.TenantState_TENANT_STATE_DEGRADED,
	broker.StateFailed:       brokerv1.TenantState_TENANT_STATE_FAILED,
	broker.StateNoCredential: brokerv1.TenantState_TENANT_STATE_NO_CREDENTIAL,
}

func optionalTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

var kindToCode = map[broker.Kind]codes.Code{
	broker.KindInternal:           codes.Internal,
	broker.KindNotFound:           codes.NotFound,
	broker.KindInvalidArgument:    codes.InvalidArgument,
	broker.KindFailedPrecondition: codes.FailedPrecondition,
	broker.KindUnavailable:        codes.Unavailable,
	broker.KindDeadlineExceeded:   codes.DeadlineExceeded,
	broker.KindCanceled:           codes.Canceled,
}

// toStatus is the one place core errors become gRPC statuses (DESIGN.md
// section 3). The message is the core's, which says what to do.
func toStatus(err error) error {
	var be *broker.Error
	if errors.As(err, &be) {
		code, ok := kindToCode[be.Kind]
		if !ok {
			code = codes.Internal
		}
		return status.Error(code, be.Msg)
	}
	return status.Error(codes.Internal, "internal error")
}
