package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TokenCredential is an azcore.TokenCredential that gets one customer
// tenant's app-only tokens from brokerd, so that the Azure SDK for Go's
// clients (and any azcore pipeline with runtime.NewBearerTokenPolicy) use
// the broker instead of holding the app's client secret.
//
// Each GetToken asks brokerd, which answers from its cache; there is no
// cache in the credential. The request's scopes are sent as they are, and
// brokerd hands out only those its configuration allows for the tenant's
// app (apps.NAME.allowed_scopes); no scopes means the app's configured
// scopes. The token's ExpiresOn is brokerd's expiry.
//
// TokenRequestOptions.TenantID, which an SDK sets from a service's
// authentication challenge, is honoured as azidentity's credentials do:
//
//   - empty, or the credential's tenant (its name as given, or the tenant
//     id brokerd reports for it): the credential's tenant;
//   - a tenant in TokenCredentialOptions.AdditionallyAllowedTenants, or any
//     tenant when that list holds "*": that tenant is asked for, and
//     brokerd decides whether this caller may have its tokens;
//   - anything else: an error naming AdditionallyAllowedTenants, without
//     asking brokerd. A service cannot make a credential made for one
//     customer send it another customer's token.
//
// TokenRequestOptions.Claims (a claims challenge) cannot be met by an
// app-only token from the broker's cache and is an error;
// TokenRequestOptions.EnableCAE is ignored.
//
// Errors carry brokerd's gRPC status (status.Code works on them) and read
// "brokerd: no token for tenant T: CODE: MESSAGE", brokerd's message saying
// what to do. A TokenCredential is safe for concurrent use; it does not own
// its Client.
type TokenCredential struct {
	c        *Client
	tenant   string
	allowed  []string // lower case; "*" allows any
	minValid time.Duration
}

// TokenCredentialOptions are the options of NewTokenCredential. The zero
// value is the default.
type TokenCredentialOptions struct {
	// AdditionallyAllowedTenants are the tenants besides the credential's
	// own that a request's TokenRequestOptions.TenantID may name, matched
	// as written: services name tenants by tenant id, so list tenant ids.
	// "*" allows any tenant brokerd lets the caller use.
	AdditionallyAllowedTenants []string
	// MinValid is the least lifetime a token must have left; 0 leaves the
	// choice to brokerd (5 minutes unless configured otherwise). azcore's
	// bearer token policy asks for a new token 5 minutes before expiry.
	MinValid time.Duration
}

// Compile-time check that TokenCredential satisfies azcore's interface.
var _ azcore.TokenCredential = (*TokenCredential)(nil)

// NewTokenCredential returns a credential for tenant (its configured name,
// tenant id or one of its domains) that gets its tokens from brokerd
// through c. It does not contact brokerd.
func NewTokenCredential(c *Client, tenant string, opts *TokenCredentialOptions) (*TokenCredential, error) {
	if c == nil {
		return nil, status.Error(codes.InvalidArgument, "NewTokenCredential: no client (dial brokerd with client.Dial first)")
	}
	if strings.TrimSpace(tenant) == "" {
		return nil, status.Error(codes.InvalidArgument, "NewTokenCredential: no tenant: give the tenant's configured name, tenant id or domain")
	}
	if opts == nil {
		opts = &TokenCredentialOptions{}
	}
	if opts.MinValid < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "NewTokenCredential: MinValid %v is negative", opts.MinValid)
	}
	tc := &TokenCredential{c: c, tenant: tenant, minValid: opts.MinValid}
	for _, t := range opts.AdditionallyAllowedTenants {
		if strings.TrimSpace(t) == "" {
			return nil, status.Error(codes.InvalidArgument, "NewTokenCredential: an empty tenant in AdditionallyAllowedTenants")
		}
		tc.allowed = append(tc.allowed, strings.ToLower(t))
	}
	return tc, nil
}

// GetToken gets a token from brokerd for the scopes and tenant of opts; see
// TokenCredential for how they are chosen.
func (tc *TokenCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if opts.Claims != "" {
		return azcore.AccessToken{}, tc.errorf(codes.FailedPrecondition, tc.tenant,
			"the service asked for a token with additional claims (a claims challenge), which brokerd's app-only tokens cannot carry")
	}
	tenant, mustBeID := tc.tenantFor(opts.TenantID)
	tok, err := tc.c.GetToken(ctx, tenant, opts.Scopes, tc.minValid)
	if err != nil {
		var se interface{ GRPCStatus() *status.Status }
		if errors.As(err, &se) {
			st := se.GRPCStatus()
			return azcore.AccessToken{}, tc.errorf(st.Code(), tenant, "%v: %s", st.Code(), st.Message())
		}
		return azcore.AccessToken{}, tc.errorf(codes.Unknown, tenant, "%v", err)
	}
	if mustBeID && !strings.EqualFold(tok.GetTenantId(), opts.TenantID) {
		return azcore.AccessToken{}, tc.errorf(codes.PermissionDenied, tc.tenant,
			"the request names tenant %q, which is not this credential's (tenant id %s); add it to TokenCredentialOptions.AdditionallyAllowedTenants to allow it",
			opts.TenantID, tok.GetTenantId())
	}
	if tok.GetAccessToken() == "" || tok.GetExpiresAt() == nil {
		return azcore.AccessToken{}, tc.errorf(codes.Internal, tenant, "brokerd answered without a token or its expiry")
	}
	return azcore.AccessToken{Token: tok.GetAccessToken(), ExpiresOn: tok.GetExpiresAt().AsTime()}, nil
}

// tenantFor is the tenant to ask brokerd for when a request names
// requested. mustBeID is true when requested is neither the credential's
// tenant as given nor an allowed one: it is then accepted only as the
// credential's tenant id, which brokerd's answer for the credential's
// tenant reports.
func (tc *TokenCredential) tenantFor(requested string) (tenant string, mustBeID bool) {
	switch {
	case requested == "" || strings.EqualFold(requested, tc.tenant):
		return tc.tenant, false
	case slices.Contains(tc.allowed, "*") || slices.Contains(tc.allowed, strings.ToLower(requested)):
		return requested, false
	}
	return tc.tenant, true
}

// errorf is an error of GetToken for tenant: its text is the whole message,
// which azcore's callers see in their own errors, and it carries code as its
// gRPC status for status.Code.
func (tc *TokenCredential) errorf(code codes.Code, tenant, format string, args ...any) error {
	return &tokenError{st: status.New(code, "brokerd: no token for tenant "+tenant+": "+fmt.Sprintf(format, args...))}
}

// tokenError is a failed GetToken of a TokenCredential.
type tokenError struct{ st *status.Status }

func (e *tokenError) Error() string { return e.st.Message() }

// GRPCStatus makes status.Code and status.FromError see the code.
func (e *tokenError) GRPCStatus() *status.Status { return e.st }
