package server_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/keystore"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// stack is the whole broker path in one process: the fake Entra ID over
// TLS, the core with real MSAL clients, the gRPC server on a real Unix
// socket and the typed client.
type stack struct {
	w      *brokertest.World
	idp    *entratest.Server
	b      *broker.Broker
	srv    *server.Server
	c      *client.Client
	store  *brokertest.Store
	socket string
	logs   *brokertest.LogBuffer
}

type stackConfig struct {
	tenants    int               // tenant0..tenantN-1, all consented
	world      *brokertest.World // instead of tenants: a World set up by the test
	lifetime   time.Duration     // token lifetime; 0 = entratest's default
	secret     string            // stored secret; "" = the right one
	noPrefetch bool              // leave the cache cold
	top        []string          // top-level config lines (idp_timeout, ...)
	clock      broker.Clock      // nil: the wall clock
}

func newStack(t testing.TB, sc stackConfig) *stack {
	t.Helper()
	w := sc.world
	if w == nil {
		w = brokertest.NewWorld(t, sc.tenants)
	}
	if sc.lifetime > 0 {
		w.IdP.SetLifetime(sc.lifetime)
	}
	store := w.Store(t)
	if sc.secret != "" {
		if err := store.Set(context.Background(), w.ClientID, keystore.NewSecret(sc.secret)); err != nil {
			t.Fatal(err)
		}
	}
	logs := &brokertest.LogBuffer{}
	log := brokertest.DebugLogger(logs)
	b := w.NewBroker(t, broker.Options{Store: store, Logger: log, Clock: sc.clock}, sc.top...)

	path := filepath.Join(brokertest.ShortDir(t), "brokerd.sock")
	l, err := server.Listen(path, server.OwnerOnly)
	if err != nil {
		t.Fatal(err)
	}
	gs := server.New(b, log)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	if !sc.noPrefetch {
		b.Start()
	}
	c, err := client.Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &stack{w: w, idp: w.IdP, b: b, srv: gs, c: c, store: store, socket: path, logs: logs}
}

func tenantID(i int) string { return brokertest.TenantID(i) }

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// 100 concurrent GetToken calls across 5 tenants on a cold start cause
// exactly 5 token requests.
func TestColdStartCoalescing(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackConfig{tenants: 5, noPrefetch: true})
	// Hold every token request long enough that all callers arrive while
	// the first acquisition per tenant is in flight.
	s.idp.SetFault("", &entratest.Fault{Delay: 500 * time.Millisecond})
	var wg sync.WaitGroup
	tokens := make([]*brokerv1.GetTokenResponse, 100)
	errs := make([]error, 100)
	for i := range 100 {
		wg.Go(func() {
			tokens[i], errs[i] = s.c.GetToken(ctx(t), fmt.Sprintf("tenant%d", i%5), nil, 0)
		})
	}
	wg.Wait()
	perTenant := map[string]string{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		want := tenantID(i % 5)
		if tokens[i].GetTenantId() != want {
			t.Errorf("call %d: tenant_id %s, want %s", i, tokens[i].GetTenantId(), want)
		}
		claims, err := entratest.Claims(tokens[i].GetAccessToken())
		if err != nil || claims["tid"] != want {
			t.Errorf("call %d: token tid %v (%v), want %s", i, claims["tid"], err, want)
		}
		if prev, ok := perTenant[want]; ok && prev != tokens[i].GetAccessToken() {
			t.Errorf("tenant %s: callers got different tokens from one acquisition", want)
		}
		perTenant[want] = tokens[i].GetAccessToken()
	}
	if got := s.idp.TotalTokenRequests(); got != 5 {
		t.Errorf("token requests = %d, want exactly 5", got)
	}
	for i := range 5 {
		if got := s.idp.TokenRequests(tenantID(i)); got != 1 {
			t.Errorf("tenant%d: token requests = %d, want 1", i, got)
		}
	}
}

// A wrong secret is FAILED_PRECONDITION naming AADSTS7000215 and what
// to do.
func TestWrongSecret(t *testing.T) {
	t.Parallel()
	const wrong = "wrong-secret-Q~0000000000000000000000000"
	s := newStack(t, stackConfig{tenants: 1, secret: wrong, noPrefetch: true})
	_, err := s.c.GetToken(ctx(t), "tenant0", nil, 0)
	wantStatus(t, err, codes.FailedPrecondition, "AADSTS7000215", "brokerctl credential set --app partner")
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error contains the secret: %v", err)
	}
	// A second call inside the retry window does not hammer Entra ID.
	_, err = s.c.GetToken(ctx(t), "tenant0", nil, 0)
	wantStatus(t, err, codes.FailedPrecondition, "AADSTS7000215", "next attempt at")
	if got := s.idp.TokenRequests(tenantID(0)); got != 1 {
		t.Errorf("token requests = %d, want 1 (permanent errors are not retried per call)", got)
	}
	list, err := s.c.ListTenants(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st := list[0]; st.GetState() != brokerv1.TenantState_TENANT_STATE_FAILED || !strings.Contains(st.GetLastError(), "AADSTS7000215") {
		t.Errorf("tenant status = %v, %q", st.GetState(), st.GetLastError())
	}
	if strings.Contains(s.logs.String(), wrong) {
		t.Error("logs contain the secret")
	}
}

// Unknown tenant: NOT_FOUND. Not consented: FAILED_PRECONDITION with
// the admin consent URL.
func TestTenantErrors(t *testing.T) {
	t.Parallel()
	const ghost = "99999999-0000-4000-8000-000000000009"
	const unconsented = "88888888-0000-4000-8000-000000000008"
	w := brokertest.NewWorld(t, 1)
	w.Configure("ghost", ghost, w.App)
	w.AddTenant("newcustomer", unconsented, w.App, false)
	s := newStack(t, stackConfig{world: w, noPrefetch: true})

	_, err := s.c.GetToken(ctx(t), "nosuchtenant", nil, 0)
	wantStatus(t, err, codes.NotFound, `tenant "nosuchtenant" is not configured`, "ghost, newcustomer, tenant0")

	_, err = s.c.GetToken(ctx(t), "ghost", nil, 0)
	wantStatus(t, err, codes.NotFound, "AADSTS90002", "check the tenant id")

	_, err = s.c.GetToken(ctx(t), "newcustomer", nil, 0)
	consent := fmt.Sprintf("%s/%s/adminconsent?client_id=%s", s.idp.URL(), unconsented, s.w.ClientID)
	wantStatus(t, err, codes.FailedPrecondition, "AADSTS700016", consent)

	// The healthy tenant is unaffected, by name, id and domain.
	for _, name := range []string{"tenant0", tenantID(0), strings.ToUpper(tenantID(0)), "Tenant0.onmicrosoft.com"} {
		resp, err := s.c.GetToken(ctx(t), name, nil, 0)
		if err != nil || resp.GetTenantId() != tenantID(0) {
			t.Errorf("GetToken(%s) = %v, %v", name, resp.GetTenantId(), err)
		}
	}
}

func TestRequestValidation(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	w.Apps[0].Extra = []string{`allowed_scopes = ["https://api.securitycenter.microsoft.com", "https://graph.microsoft.com/.default"]`}
	s := newStack(t, stackConfig{world: w, lifetime: 30 * time.Second})
	// The token lifetime is known once the first token is.
	if _, err := s.c.GetToken(ctx(t), "tenant0", nil, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		tenant   string
		scopes   []string
		minValid time.Duration
		code     codes.Code
		msg      string
	}{
		{"empty tenant", "", nil, 0, codes.InvalidArgument, "no tenant given"},
		{"bad scope", "tenant0", []string{"https://graph.microsoft.com/User.Read"}, 0, codes.InvalidArgument, "/.default"},
		{"negative min_valid", "tenant0", nil, -time.Second, codes.InvalidArgument, "negative"},
		{"min_valid beyond token lifetime", "tenant0", nil, time.Minute, codes.InvalidArgument, "min_valid 1m0s is more than half of tenant tenant0's token lifetime (30s); ask for at most 15s"},
	}
	for _, tt := range tests {
		_, err := s.c.GetToken(ctx(t), tt.tenant, tt.scopes, tt.minValid)
		t.Run(tt.name, func(t *testing.T) { wantStatus(t, err, tt.code, tt.msg) })
	}
	// Another resource's scope gets its own token with that audience.
	resp, err := s.c.GetToken(ctx(t), "tenant0", []string{"https://graph.microsoft.com/.default"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c, _ := entratest.Claims(resp.GetAccessToken()); c["aud"] != "https://graph.microsoft.com" {
		t.Errorf("aud = %v", c["aud"])
	}
}

func TestWrongTenantInTokenRefused(t *testing.T) {
	t.Parallel()
	s := newStack(t, stackConfig{tenants: 1, noPrefetch: true})
	s.idp.SetFault("", &entratest.Fault{WrongTenantID: tenantID(42)})
	_, err := s.c.GetToken(ctx(t), "tenant0", nil, 0)
	wantStatus(t, err, codes.Unavailable, tenantID(42), "refused")
	for _, tok := range s.idp.Issued() {
		if strings.Contains(err.Error(), tok) || strings.Contains(s.logs.String(), tok) {
			t.Error("a token leaked into the error or the logs")
		}
	}
}

func TestSetCredential(t *testing.T) {
	t.Parallel()
	const wrong = "wrong-secret-Q~1111111111111111111111111"
	s := newStack(t, stackConfig{tenants: 2})
	first, err := s.c.GetToken(ctx(t), "tenant0", nil, 0)
	if err != nil {
		t.Fatal(err)
	}

	_, err = s.c.SetCredential(ctx(t), &brokerv1.SetCredentialRequest{App: "partner", Credential: &brokerv1.SetCredentialRequest_ClientSecret{ClientSecret: wrong}})
	wantStatus(t, err, codes.FailedPrecondition, "AADSTS7000215", "was not stored")
	if got := brokertest.StoredSecret(s.store, s.w.ClientID); got != s.w.Secret {
		t.Error("a rejected secret replaced the stored one")
	}
	if _, err := s.c.GetToken(ctx(t), "tenant1", nil, 0); err != nil {
		t.Errorf("GetToken after a rejected secret: %v", err)
	}

	_, err = s.c.SetCredential(ctx(t), &brokerv1.SetCredentialRequest{App: "nosuchapp", Credential: &brokerv1.SetCredentialRequest_ClientSecret{ClientSecret: s.w.Secret}})
	wantStatus(t, err, codes.NotFound, `app "nosuchapp" is not configured`, "partner")
	_, err = s.c.SetCredential(ctx(t), &brokerv1.SetCredentialRequest{App: "partner", Credential: &brokerv1.SetCredentialRequest_ClientSecret{ClientSecret: ""}})
	wantStatus(t, err, codes.InvalidArgument, "empty")

	// Rotation: Entra ID now expects a new secret; the old one stops working.
	const rotated = "rotated-secret-Q~2222222222222222222222222"
	s.idp.AddApp(s.w.ClientID, rotated)
	resp, err := s.c.SetCredential(ctx(t), &brokerv1.SetCredentialRequest{App: "partner", Credential: &brokerv1.SetCredentialRequest_ClientSecret{ClientSecret: rotated}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVerifiedWithTenant() != "tenant0" {
		t.Errorf("verified_with_tenant = %q", resp.GetVerifiedWithTenant())
	}
	if got := brokertest.StoredSecret(s.store, s.w.ClientID); got != rotated {
		t.Error("the verified secret was not stored")
	}
	// Every tenant of the app is re-acquired with the new secret.
	brokertest.WaitFor(t, "a new token for tenant0", func() bool {
		tok, err := s.c.GetToken(ctx(t), "tenant0", nil, 0)
		return err == nil && tok.GetAccessToken() != first.GetAccessToken()
	})
	for _, leak := range []string{wrong, rotated, s.w.Secret} {
		if strings.Contains(s.logs.String(), leak) {
			t.Error("logs contain a secret")
		}
	}
}

func wantStatus(t *testing.T, err error, code codes.Code, msgs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v", code)
	}
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Errorf("code = %v, want %v (message %q)", st.Code(), code, st.Message())
	}
	for _, m := range msgs {
		if !strings.Contains(st.Message(), m) {
			t.Errorf("message %q does not contain %q", st.Message(), m)
		}
	}
}

// Many acquisitions falling due at once (after a suspend, or a cold start
// with many callers) queue for max_idp_requests slots instead of storming
// the IdP; every caller still gets its token.
func TestIdPRequestsBounded(t *testing.T) {
	t.Parallel()
	const tenants = 40
	s := newStack(t, stackConfig{tenants: tenants, noPrefetch: true, top: []string{"max_idp_requests = 4"}})
	s.idp.SetFault("", &entratest.Fault{Delay: 100 * time.Millisecond})
	var wg sync.WaitGroup
	for i := range tenants {
		wg.Go(func() {
			if _, err := s.c.GetToken(ctx(t), fmt.Sprintf("tenant%d", i), nil, 0); err != nil {
				t.Errorf("tenant%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if got := s.idp.MaxConcurrentTokenRequests(); got < 1 || got > 4 {
		t.Errorf("the IdP handled %d token requests at once, want at most 4", got)
	}
	if got := s.idp.TotalTokenRequests(); got != tenants {
		t.Errorf("%d token requests, want %d", got, tenants)
	}
}
