// Package server is the gRPC adapter of the broker: it serves
// broker.v1.BrokerService, grpc.health.v1 and server reflection over a Unix
// socket, and turns the core's errors into gRPC statuses in one place
// (toStatus).
//
// Security role: it is the daemon's only door. Listen creates the socket
// owner-only (directory 0700, socket 0600) or shared with one group (0750,
// 0660), and never unlinks a socket a live daemon answers on. Every
// connection carries its caller's kernel-verified uid, gid, groups and pid
// (SO_PEERCRED, SO_PEERGROUPS) as gRPC AuthInfo; one authorizer decides and
// audits every BrokerService call from them. No handler returns or logs a
// secret, or a token other than those GetToken and WatchToken hand their
// caller.
//
// The [limits] of the configuration bound what any local user who can
// connect can make the daemon hold: connections per uid and in total
// (refused at accept, before gRPC sees them), idle connections (closed),
// what a connection may send (message, header and window sizes, calls in
// progress), the tenant and scopes of a request (checked before anything
// is logged, cached or sent) and the audit lines of its denials per
// minute.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/keystore"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// Server serves the broker on Unix sockets.
type Server struct {
	gs    *grpc.Server
	log   *slog.Logger
	conns *connLimits
	obs   Observer
	// denials, listings, versions and refusals rate limit the log lines
	// of denied calls, of non-admins' ListTenants and GetVersion calls and
	// of refused connections per uid; Stop and GracefulStop report what
	// they held back.
	denials, listings, versions, refusals *uidLimiter
	// stopping ends every watch when the server stops, so that a graceful
	// stop does not wait for streams that would never end by themselves.
	stopping context.Context
	stop     context.CancelFunc
	// reload serves Reload; nil refuses it.
	reload Reloader
}

// New returns a server with BrokerService over b, the health service
// (SERVING) and reflection. Every connection is identified by its peer
// credentials and held to b's connection and request limits, and every
// BrokerService call authorized and audited on log.
func New(b *broker.Broker, log *slog.Logger, opts ...Option) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lim := b.Limits()
	checkFileLimit(lim, log)
	stopping, stop := context.WithCancel(context.Background())
	s := &Server{
		stopping: stopping,
		stop:     stop,
		log:      log,
		conns:    newConnLimits(lim),
		denials:  newUIDLimiter(b.Clock(), lim.AuditDenialsPerMinute, time.Minute, denialSummary(log, lim.AuditDenialsPerMinute)),
		listings: newUIDLimiter(b.Clock(), lim.AuditDenialsPerMinute, time.Minute, callSummary(log, "ListTenants", lim.AuditDenialsPerMinute)),
		versions: newUIDLimiter(b.Clock(), lim.AuditDenialsPerMinute, time.Minute, callSummary(log, "GetVersion", lim.AuditDenialsPerMinute)),
		refusals: newUIDLimiter(b.Clock(), 1, time.Minute, connRefusalSummary(log)),
	}
	for _, o := range opts {
		o(s)
	}
	az := &authorizer{b: b, limits: lim, audit: log, denials: s.denials, listings: s.listings, versions: s.versions, obs: s.obs}
	gopts := append(transportLimits(lim),
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
		grpc.Creds(peerCreds{}),
		grpc.ChainUnaryInterceptor(az.unary),
		grpc.ChainStreamInterceptor(az.stream),
	)
	gs := grpc.NewServer(gopts...)
	brokerv1.RegisterBrokerServiceServer(gs, &service{b: b, stopping: stopping, reload: s.reload, az: az})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(brokerv1.BrokerService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	s.gs = gs
	return s
}

// Serve accepts connections on l (a Unix socket listener) until Stop or
// GracefulStop. The connection limits hold across every listener served.
func (s *Server) Serve(l net.Listener) error {
	return s.gs.Serve(&peerListener{Listener: l, log: s.log, conns: s.conns, refusals: s.refusals})
}

// GracefulStop stops accepting, ends every watch (UNAVAILABLE), waits for
// the other calls in progress, and logs the denials and refusals the rate
// limits held back.
func (s *Server) GracefulStop() {
	s.stop()
	s.gs.GracefulStop()
	s.flush()
}

// Stop closes every connection at once, and logs the denials and refusals
// the rate limits held back.
func (s *Server) Stop() {
	s.stop()
	s.gs.Stop()
	s.flush()
}

func (s *Server) flush() {
	s.denials.close()
	s.listings.close()
	s.versions.close()
	s.refusals.close()
}

// service implements brokerv1.BrokerServiceServer over the core.
type service struct {
	brokerv1.UnimplementedBrokerServiceServer
	b        *broker.Broker
	stopping context.Context // done once the server stops
	reload   Reloader
	az       *authorizer // audits a watch a reload ended with a denial
}

func (s *service) GetToken(ctx context.Context, req *brokerv1.GetTokenRequest) (*brokerv1.GetTokenResponse, error) {
	minValid, err := minValidOf(req.GetMinValid())
	if err != nil {
		return nil, err
	}
	tok, err := s.b.GetToken(ctx, broker.TokenRequest{Tenant: req.GetTenant(), Scopes: req.GetScopes(), MinValid: minValid, Caller: callerOf(ctx)})
	if err != nil {
		s.auditReloadDenial(ctx, "GetToken", req.GetTenant(), err)
		return nil, toStatus(err)
	}
	// Built once per token, not per call; gRPC only reads it.
	return tok.Memo(tokenResponse).(*brokerv1.GetTokenResponse), nil
}

// callerOf is the caller of the RPC in ctx, for the broker's own check of
// the allow list. The authorizer has refused a call without one.
func callerOf(ctx context.Context) *broker.Caller {
	if p := peerOf(ctx); p != nil {
		return &p.Caller
	}
	return &broker.Caller{UID: ^uint32(0), GID: ^uint32(0)} // nobody: denied
}

// minValidOf is a request's min_valid; 0 when unset.
func minValidOf(mv *durationpb.Duration) (time.Duration, error) {
	if mv == nil {
		return 0, nil
	}
	if err := mv.CheckValid(); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "min_valid: %v", err)
	}
	d := mv.AsDuration()
	if d <= 0 {
		return 0, status.Errorf(codes.InvalidArgument, "min_valid must be positive, got %s", d)
	}
	return d, nil
}

func tokenResponse(tok *broker.Token) any {
	return &brokerv1.GetTokenResponse{
		AccessToken: tok.AccessToken,
		TokenType:   "Bearer",
		ExpiresAt:   timestamppb.New(tok.ExpiresAt),
		TenantId:    tok.TenantID,
		Scopes:      tok.Scopes,
	}
}

func (s *service) ListTenants(ctx context.Context, _ *brokerv1.ListTenantsRequest) (*brokerv1.ListTenantsResponse, error) {
	p := peerOf(ctx)
	list := s.b.ListTenantsFor(&p.Caller)
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
	resp.Apps = appsFor(s.b, p.Caller, resp.Tenants)
	return resp, nil
}

func (s *service) SetCredential(ctx context.Context, req *brokerv1.SetCredentialRequest) (*brokerv1.SetCredentialResponse, error) {
	r := broker.SetRequest{App: req.GetApp(), VerifyTenant: req.GetVerifyTenant(), NoVerify: req.GetNoVerify()}
	switch c := req.GetCredential().(type) {
	case *brokerv1.SetCredentialRequest_ClientSecret:
		r.Kind, r.Value = keystore.KindSecret, keystore.NewSecret(c.ClientSecret)
	case *brokerv1.SetCredentialRequest_CertificatePem:
		r.Kind, r.Value = keystore.KindCertificate, keystore.NewSecret(string(c.CertificatePem))
	}
	if e := req.GetExpiresAt(); e != nil {
		if err := e.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "expires_at: %v", err)
		}
		r.Expires = e.AsTime()
	}
	tenant, info, err := s.b.SetCredential(ctx, r)
	if err != nil {
		return nil, toStatus(err)
	}
	return &brokerv1.SetCredentialResponse{VerifiedWithTenant: tenant, Credential: credentialInfo(info)}, nil
}

func (s *service) GetCredential(ctx context.Context, req *brokerv1.GetCredentialRequest) (*brokerv1.GetCredentialResponse, error) {
	info, err := s.b.GetCredential(ctx, req.GetApp())
	if err != nil {
		return nil, toStatus(err)
	}
	return &brokerv1.GetCredentialResponse{Credential: credentialInfo(info)}, nil
}

func (s *service) DeleteCredential(ctx context.Context, req *brokerv1.DeleteCredentialRequest) (*brokerv1.DeleteCredentialResponse, error) {
	info, err := s.b.DeleteCredential(ctx, req.GetApp())
	if err != nil {
		return nil, toStatus(err)
	}
	return &brokerv1.DeleteCredentialResponse{Credential: credentialInfo(info)}, nil
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
	broker.KindPermissionDenied:   codes.PermissionDenied,
	broker.KindResourceExhausted:  codes.ResourceExhausted,
	// DEADLINE_EXCEEDED is gRPC's code for a change that may have taken
	// effect although its answer did not arrive in time.
	broker.KindOutcomeUnknown: codes.DeadlineExceeded,
}

// toStatus is the one place core errors become gRPC statuses. The message
// is the core's, which says what to do.
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

// auditReloadDenial audits, like any denial, a call the broker refused
// because a reload took its caller off the tenant's allow list after the
// authorizer allowed it. tenant passed Limits.CheckTokenRequest.
func (s *service) auditReloadDenial(ctx context.Context, rpc, tenant string, err error) {
	if !broker.IsNotAllowed(err) {
		return
	}
	if p := peerOf(ctx); p != nil {
		s.az.log(rpc, tenant, p, false, "not allowed since a configuration reload (the allow list changed, or the tenant was removed)")
		s.az.observeDenial(ctx, status.Error(codes.PermissionDenied, ""))
	}
}
