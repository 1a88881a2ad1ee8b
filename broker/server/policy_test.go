package server_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// The scope policy and the min_valid bounds over real gRPC, counted at the
// fake Entra ID: a scope outside allowed_scopes is PERMISSION_DENIED, a
// scope set past limits.max_scope_sets is RESOURCE_EXHAUSTED, a min_valid
// over half the token lifetime is INVALID_ARGUMENT, and none of them
// reaches Entra ID; a resource listed in allowed_scopes gets its token.
func TestScopePolicyOverGRPC(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	w.Apps[0].Extra = []string{`allowed_scopes = ["https://api.securitycenter.microsoft.com", "https://graph.microsoft.com", "api://second/.default"]`}
	s := newStack(t, stackConfig{world: w, top: []string{"[limits]", "max_scope_sets = 1"}})
	if _, err := s.c.GetToken(ctx(t), "tenant0", nil, 0); err != nil {
		t.Fatal(err)
	}
	before := s.idp.TokenRequests(tenantID(0))

	_, err := s.c.GetToken(ctx(t), "tenant0", []string{"https://management.azure.com/.default"}, 0)
	wantStatus(t, err, codes.PermissionDenied, `scope "https://management.azure.com/.default" is not allowed for tenant tenant0's app partner`,
		"an administrator can add it to apps.partner.allowed_scopes")
	many := make([]string, 2000)
	for i := range many {
		many[i] = fmt.Sprintf("api://junk%d/.default", i)
	}
	_, err = s.c.GetToken(ctx(t), "tenant0", many, 0)
	switch status.Code(err) {
	case codes.PermissionDenied, codes.InvalidArgument, codes.ResourceExhausted:
	default:
		t.Errorf("2000 scopes: %v, want them refused", err)
	}
	for range 200 {
		_, err = s.c.GetToken(ctx(t), "tenant0", nil, 59*time.Minute+59990*time.Millisecond)
		wantStatus(t, err, codes.InvalidArgument, "min_valid 59m59.99s is more than half of tenant tenant0's token lifetime (1h0m0s); ask for at most 30m0s")
	}
	if got := s.idp.TokenRequests(tenantID(0)); got != before {
		t.Errorf("%d token requests for refused requests", got-before)
	}

	resp, err := s.c.GetToken(ctx(t), "tenant0", []string{"https://graph.microsoft.com/.default"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := entratest.Claims(resp.GetAccessToken()); c["aud"] != "https://graph.microsoft.com" {
		t.Errorf("aud = %v", c["aud"])
	}
	_, err = s.c.GetToken(ctx(t), "tenant0", []string{"api://second/.default"}, 0)
	wantStatus(t, err, codes.ResourceExhausted, "tenant tenant0 already keeps 1 scope sets", "limits.max_scope_sets")
	if got := s.idp.TokenRequests(tenantID(0)); got != before+1 {
		t.Errorf("%d token requests, want 1 (the allowed resource)", got-before)
	}
}
