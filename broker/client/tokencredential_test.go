package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

const defenderScope = "https://api.securitycenter.microsoft.com/.default"

// brokerd in this process: the fake Entra ID with n consented tenants, the
// core with real MSAL clients, and the gRPC server on a real Unix socket;
// and a Client dialled to it.
func startBrokerd(t *testing.T, n int) *client.Client {
	t.Helper()
	w := brokertest.NewWorld(t, n)
	b := w.NewBroker(t, broker.Options{})
	path := filepath.Join(brokertest.ShortDir(t), "brokerd.sock")
	l, err := server.Listen(path, server.OwnerOnly)
	if err != nil {
		t.Fatal(err)
	}
	gs := server.New(b, nil)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	b.Start()
	c, err := client.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// resourceServer is an HTTPS API that accepts a request only with the
// bearer token brokerd hands out for the tenant the test expects, and
// records the tid of every token it accepted.
type resourceServer struct {
	*httptest.Server
	c *client.Client

	mu       sync.Mutex
	want     string // the tenant whose token is expected
	accepted []string
	refused  int
}

func newResourceServer(t *testing.T, c *client.Client) *resourceServer {
	rs := &resourceServer{c: c}
	rs.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		defer rs.mu.Unlock()
		tok, err := c.GetToken(r.Context(), rs.want, nil, 0)
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if err != nil || !ok || got != tok.GetAccessToken() {
			rs.refused++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		claims, err := entratest.Claims(got)
		if err != nil || claims["tid"] != tok.GetTenantId() {
			rs.refused++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		rs.accepted = append(rs.accepted, claims["tid"].(string))
	}))
	t.Cleanup(rs.Close)
	return rs
}

func (rs *resourceServer) expect(tenant string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.want, rs.accepted, rs.refused = tenant, nil, 0
}

func (rs *resourceServer) seen() (accepted []string, refused int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.accepted, rs.refused
}

// call sends one GET through an azcore pipeline whose bearer token policy
// gets tokens from cred, for scope and, like an SDK answering a service's
// challenge, for the tenant tenantID (empty: none named).
func call(t *testing.T, rs *resourceServer, cred *client.TokenCredential, scope, tenantID string) (*http.Response, error) {
	t.Helper()
	bearer := runtime.NewBearerTokenPolicy(cred, []string{scope}, &policy.BearerTokenOptions{
		AuthorizationHandler: policy.AuthorizationHandler{
			OnRequest: func(_ *policy.Request, authorize func(policy.TokenRequestOptions) error) error {
				return authorize(policy.TokenRequestOptions{Scopes: []string{scope}, TenantID: tenantID})
			},
		},
	})
	pl := runtime.NewPipeline("tokenbroker-test", "v0.0.0",
		runtime.PipelineOptions{PerRetry: []policy.Policy{bearer}},
		&policy.ClientOptions{Transport: rs.Client(), Retry: policy.RetryOptions{MaxRetries: -1}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := runtime.NewRequest(ctx, http.MethodGet, rs.URL+"/api/alerts")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := pl.Do(req)
	if resp != nil {
		resp.Body.Close()
	}
	return resp, err
}

func newCredential(t *testing.T, c *client.Client, tenant string, opts *client.TokenCredentialOptions) *client.TokenCredential {
	t.Helper()
	cred, err := client.NewTokenCredential(c, tenant, opts)
	if err != nil {
		t.Fatal(err)
	}
	return cred
}

// The credential works inside a real azcore pipeline: the resource server
// receives exactly the token brokerd holds for the credential's tenant, and
// for the tenant an SDK names in TokenRequestOptions.TenantID when the
// credential allows it.
func TestTokenCredentialInPipeline(t *testing.T) {
	t.Parallel()
	c := startBrokerd(t, 3)
	rs := newResourceServer(t, c)
	t0, t1 := brokertest.TenantID(0), brokertest.TenantID(1)

	cred := newCredential(t, c, "tenant0", &client.TokenCredentialOptions{AdditionallyAllowedTenants: []string{t1}})
	tests := []struct {
		name, tenantID, want string
	}{
		{"no tenant named", "", t0},
		{"the credential's tenant by its name", "TENANT0", t0},
		{"the credential's tenant by its id", t0, t0},
		{"an additionally allowed tenant", t1, t1},
	}
	for _, tt := range tests {
		rs.expect(tt.want)
		resp, err := call(t, rs, cred, defenderScope, tt.tenantID)
		accepted, refused := rs.seen()
		if err != nil || resp.StatusCode != http.StatusOK || len(accepted) != 1 || accepted[0] != tt.want || refused != 0 {
			t.Errorf("%s: status %v, error %v; server accepted %v and refused %d, want one token with tid %s",
				tt.name, resp, err, accepted, refused, tt.want)
		}
	}

	// ExpiresOn is brokerd's expiry of the token.
	at, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{defenderScope}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.GetToken(context.Background(), "tenant0", []string{defenderScope}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if at.Token != tok.GetAccessToken() || !at.ExpiresOn.Equal(tok.GetExpiresAt().AsTime()) {
		t.Errorf("GetToken = expiry %v, want brokerd's token and its expiry %v", at.ExpiresOn, tok.GetExpiresAt().AsTime())
	}
}

// What the credential or brokerd refuses fails the pipeline's request
// before it is sent, with an error that says what is wrong and carries the
// gRPC code.
func TestTokenCredentialRefusals(t *testing.T) {
	t.Parallel()
	c := startBrokerd(t, 3)
	rs := newResourceServer(t, c)
	t2 := brokertest.TenantID(2)
	unknown := brokertest.TenantID(9)

	only := newCredential(t, c, "tenant0", nil)
	anyTenant := newCredential(t, c, "tenant0", &client.TokenCredentialOptions{AdditionallyAllowedTenants: []string{"*"}})
	tests := []struct {
		name     string
		cred     *client.TokenCredential
		scope    string
		tenantID string
		code     codes.Code
		want     []string
	}{
		{"a tenant the credential does not allow", only, defenderScope, t2, codes.PermissionDenied,
			[]string{"brokerd: no token for tenant tenant0:", `the request names tenant "` + t2 + `"`, "AdditionallyAllowedTenants"}},
		{"a tenant brokerd does not have", anyTenant, defenderScope, unknown, codes.NotFound,
			[]string{"brokerd: no token for tenant " + unknown + ": NotFound:", "is not configured"}},
		{"a scope brokerd does not allow", only, "https://graph.microsoft.com/.default", "", codes.PermissionDenied,
			[]string{"brokerd: no token for tenant tenant0: PermissionDenied:", "https://graph.microsoft.com/.default", "allowed_scopes"}},
	}
	for _, tt := range tests {
		rs.expect("tenant0")
		resp, err := call(t, rs, tt.cred, tt.scope, tt.tenantID)
		accepted, refused := rs.seen()
		if err == nil || len(accepted)+refused != 0 {
			t.Errorf("%s: status %v, error %v; the server saw %d requests, want an error and none", tt.name, resp, err, len(accepted)+refused)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", tt.name, err, w)
			}
		}
		if got := status.Code(err); got != tt.code {
			t.Errorf("%s: status.Code = %v, want %v", tt.name, got, tt.code)
		}
	}

	// A claims challenge cannot be met from brokerd's cache.
	_, err := only.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{defenderScope}, Claims: `{"access_token":{"nbf":{"essential":true}}}`})
	if err == nil || !strings.Contains(err.Error(), "claims challenge") || status.Code(err) != codes.FailedPrecondition {
		t.Errorf("claims challenge: %v, want FAILED_PRECONDITION naming the claims challenge", err)
	}
}

func TestNewTokenCredentialInput(t *testing.T) {
	c := startBrokerd(t, 1)
	for _, tt := range []struct {
		name   string
		c      *client.Client
		tenant string
		opts   *client.TokenCredentialOptions
		want   string
	}{
		{"no client", nil, "tenant0", nil, "no client"},
		{"no tenant", c, " ", nil, "no tenant"},
		{"negative MinValid", c, "tenant0", &client.TokenCredentialOptions{MinValid: -time.Second}, "MinValid -1s is negative"},
		{"empty allowed tenant", c, "tenant0", &client.TokenCredentialOptions{AdditionallyAllowedTenants: []string{""}}, "empty tenant in AdditionallyAllowedTenants"},
	} {
		_, err := client.NewTokenCredential(tt.c, tt.tenant, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) || status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want INVALID_ARGUMENT with %q", tt.name, err, tt.want)
		}
	}
}
