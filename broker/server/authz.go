package server

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// authorizer is the one place that decides who may call what, from the
// caller's kernel-verified identity, and writes the audit log.
//
//   - GetToken and WatchToken: first the request's size and form (Limits.CheckTokenRequest:
//     INVALID_ARGUMENT, before anything is logged or looked up), then the
//     tenant's allow lists (broker.Authorize). A decision is audited once
//     per connection, tenant and configuration, since the caller cannot
//     change; after a reload it is made and audited anew. The broker
//     checks the allow list again in the configuration it finds the
//     tenant in (TokenRequest.Caller), and a watch after each reload. A caller
//     that is not an admin is denied an unknown tenant with the very
//     message of a tenant it may not use.
//   - SetCredential, GetCredential, DeleteCredential, Reload: the daemon's
//     own uid and root only.
//   - ListTenants: anyone connected; the handler lists only the tenants the
//     caller may get tokens for. It hands out no token, so a non-admin's
//     calls are audited once per connection and at most
//     limits.audit_denials_per_minute times per uid and minute, like
//     denials: a caller on no list cannot flood the log by reconnecting.
//   - GetVersion: anyone connected; it tells only how brokerd was built.
//     It is audited once per connection, and a non-admin's lines are
//     held to limits.audit_denials_per_minute per uid, like ListTenants.
//   - grpc.health.v1 and reflection: anyone; they carry no tenant data.
//   - Any other BrokerService method, unary or stream: denied (fail closed).
//
// A stream (WatchToken) is authorized on its request, the first message
// its handler reads; nothing is sent on it before that.
//
// Denials are audited at most limits.audit_denials_per_minute times per uid
// and minute; the rest are counted in one line per uid and minute, "N more
// denials from uid U". Grants are always audited.
type authorizer struct {
	b      *broker.Broker
	limits broker.Limits
	audit  *slog.Logger
	// denials rate limits the audit lines of denials per uid; nil audits
	// every denial.
	denials *uidLimiter
	// listings and versions rate limit the audit lines of non-admins'
	// ListTenants and GetVersion calls per uid; nil audits every one.
	listings, versions *uidLimiter
	// obs is told of GetToken calls and denials; nil tells nobody.
	obs Observer
}

// callSummary is the report of the listings or the versions limiter, for
// calls of rpc.
func callSummary(log *slog.Logger, rpc string, perMinute int) func(uid uint32, held int) {
	return func(uid uint32, held int) {
		log.Warn(fmt.Sprintf("%d more %s %s from uid %d", held, rpc, plural(held, "call"), uid), "uid", uid, "calls", held,
			"reason", fmt.Sprintf("over limits.audit_denials_per_minute (%d)", perMinute))
	}
}

// listKey and versionKey are the keys under which a connection remembers
// that its ListTenants or GetVersion call was audited; no tenant name can
// be empty or start with a NUL.
const (
	listKey    = "\x00ListTenants"
	versionKey = "\x00GetVersion"
)

// denialSummary is the report of the denials limiter.
func denialSummary(log *slog.Logger, perMinute int) func(uid uint32, held int) {
	return func(uid uint32, held int) {
		log.Warn(fmt.Sprintf("%d more %s from uid %d", held, plural(held, "denial"), uid), "uid", uid, "denials", held,
			"reason", fmt.Sprintf("over limits.audit_denials_per_minute (%d)", perMinute))
	}
}

const brokerService = "/" + "broker.v1.BrokerService/"

func (a *authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
	defer a.observeCall(info.FullMethod, &err)
	if err := a.authorize(ctx, info.FullMethod, req); err != nil {
		a.observeDenial(ctx, err)
		return nil, err
	}
	defer a.recoverPanic(info.FullMethod, &err)
	return handler(ctx, req)
}

// stream authorizes a stream on its first message, the request: the
// handler reads it before anything else, and gets the denial instead of
// it. Until that message is authorized, the handler can neither send nor
// read another (fail closed).
func (a *authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
	if !isBrokerService(info.FullMethod) {
		return handler(srv, ss) // health, reflection
	}
	if !streamsByRequest[info.FullMethod] {
		err := a.authorize(ss.Context(), info.FullMethod, nil) // no policy: denied
		a.observeDenial(ss.Context(), err)
		return err
	}
	defer a.recoverPanic(info.FullMethod, &err)
	return handler(srv, &authorizedStream{ServerStream: ss, a: a, method: info.FullMethod})
}

// streamsByRequest are the BrokerService streams authorized on their
// request; any other stream is denied before its handler runs.
var streamsByRequest = map[string]bool{brokerv1.BrokerService_WatchToken_FullMethodName: true}

// authorizedStream is a BrokerService stream whose first received message
// is authorized as its request.
type authorizedStream struct {
	grpc.ServerStream
	a          *authorizer
	method     string
	authorized bool
}

func (s *authorizedStream) RecvMsg(m any) error {
	if s.authorized {
		return status.Error(codes.InvalidArgument, "one request per stream")
	}
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if err := s.a.authorize(s.Context(), s.method, m); err != nil {
		s.a.observeDenial(s.Context(), err)
		return err
	}
	s.authorized = true
	return nil
}

func (s *authorizedStream) SendMsg(m any) error {
	if !s.authorized {
		return status.Error(codes.PermissionDenied, "the stream's request was not authorized")
	}
	return s.ServerStream.SendMsg(m)
}

func (s *authorizedStream) SendHeader(md metadata.MD) error {
	if !s.authorized {
		return status.Error(codes.PermissionDenied, "the stream's request was not authorized")
	}
	return s.ServerStream.SendHeader(md)
}

func isBrokerService(method string) bool {
	return len(method) >= len(brokerService) && method[:len(brokerService)] == brokerService
}

// recoverPanic turns a handler's panic into INTERNAL instead of a crash
// that would drop every caller. It logs the panic's type and stack, never
// its value, which could hold request data.
func (a *authorizer) recoverPanic(method string, err *error) {
	if r := recover(); r != nil {
		a.audit.Error("handler panicked", "rpc", path.Base(method), "panic_type", fmt.Sprintf("%T", r), "stack", string(debug.Stack()))
		*err = status.Error(codes.Internal, "internal error (logged by brokerd)")
	}
}

func (a *authorizer) authorize(ctx context.Context, method string, req any) error {
	if !isBrokerService(method) {
		return nil // health, reflection
	}
	p := peerOf(ctx)
	if p == nil {
		return status.Error(codes.PermissionDenied, "the caller's credentials are unknown")
	}
	rpc := path.Base(method)
	switch r := req.(type) {
	case *brokerv1.GetTokenRequest, *brokerv1.WatchTokenRequest:
		tr := r.(tokenRequest)
		asked := tr.GetTenant()
		if err := a.limits.CheckTokenRequest(broker.TokenRequest{Tenant: asked, Scopes: tr.GetScopes()}); err != nil {
			// The message states the limit, never the value.
			a.log(rpc, "", p, false, err.Msg)
			return toStatus(err)
		}
		gen := a.b.Generation() // read first: a reload in between audits once more, never once less
		tenant, allowed, reason := a.b.Authorize(p.Caller, asked)
		if p.firstDecision(tenant, gen) {
			if tenant == "" {
				tenant = asked // unknown, and checked above
			}
			a.log(rpc, tenant, p, allowed, reason)
		}
		return deny(allowed, p, asked)
	case *brokerv1.SetCredentialRequest, *brokerv1.GetCredentialRequest, *brokerv1.DeleteCredentialRequest, *brokerv1.ReloadRequest:
		allowed, reason := broker.IsAdmin(p.Caller), "administration is for the daemon's uid and root"
		a.log(rpc, "", p, allowed, reason)
		if !allowed {
			return status.Errorf(codes.PermissionDenied, "uid %d may not call %s: only the daemon's uid and root may", p.Caller.UID, rpc)
		}
		return nil
	case *brokerv1.ListTenantsRequest:
		if broker.IsAdmin(p.Caller) || p.firstDecision(listKey, 0) && (a.listings == nil || a.listings.allow(p.Caller.UID)) {
			a.log(rpc, "", p, true, "lists only the tenants the caller may use")
		}
		return nil
	case *brokerv1.GetVersionRequest:
		if p.firstDecision(versionKey, 0) && (broker.IsAdmin(p.Caller) || a.versions == nil || a.versions.allow(p.Caller.UID)) {
			a.log(rpc, "", p, true, "tells only how brokerd was built")
		}
		return nil
	default:
		a.log(rpc, "", p, false, "no policy for this method")
		return status.Errorf(codes.PermissionDenied, "uid %d may not call %s", p.Caller.UID, rpc)
	}
}

// tokenRequest is a request for a tenant's tokens: GetToken's and
// WatchToken's, authorized alike.
type tokenRequest interface {
	GetTenant() string
	GetScopes() []string
}

func deny(allowed bool, p *Peer, tenant string) error {
	if allowed {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "uid %d may not get tokens for tenant %q", p.Caller.UID, tenant)
}

// log writes one audit line, unless it is a denial over the uid's rate. It
// never carries a token or a secret.
func (a *authorizer) log(rpc, tenant string, p *Peer, allowed bool, reason string) {
	if !allowed && a.denials != nil && !a.denials.allow(p.Caller.UID) {
		return
	}
	a.audit.Info("audit", "rpc", rpc, "tenant", tenant, "uid", p.Caller.UID, "gid", p.Caller.GID,
		"pid", p.Caller.PID, "exe", p.Exe, "allowed", allowed, "reason", reason)
}

// peerOf returns the caller of the RPC in ctx.
func peerOf(ctx context.Context) *Peer {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	p, _ := pr.AuthInfo.(*Peer)
	return p
}

// plural is noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}
