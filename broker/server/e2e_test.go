package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/internal/logbuf"
	"github.com/tokenbroker/tokenbroker/keystore"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

const (
	clientID = "0a0a0a0a-0000-4000-8000-00000000a001"
	secret   = "e2e-secret-Q~abcdefghijklmnopqrstuvwxyz0123"
)

func tenantID(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", 0x7e000000+i, i) }

// stack is the whole broker path in one process: the fake Entra ID over
// TLS, the core with real MSAL clients, the gRPC server on a real Unix
// socket and the typed client.
type stack struct {
	idp    *entratest.Server
	b      *broker.Broker
	c      *client.Client
	store  keystore.Store
	socket string
	logs   *logbuf.Buffer
}

type stackConfig struct {
	tenants    int           // tenant0..tenantN-1, all consented
	lifetime   time.Duration // token lifetime; 0 = entratest's default
	secret     string        // stored secret; "" = the right one
	noPrefetch bool          // leave the cache cold
	extraTOML  string        // appended tenant tables
	topTOML    string        // top-level keys (idp_timeout, ...)
}

func newStack(t testing.TB, sc stackConfig) *stack {
	t.Helper()
	return newStackVia(t, sc, nil)
}

// newStackVia is newStack with the authority host chosen by via, which is
// given the fake Entra ID's URL (e.g. to put a proxy in front of it).
func newStackVia(t testing.TB, sc stackConfig, via func(idpURL string) string) *stack {
	t.Helper()
	idp, err := entratest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	idp.AddApp(clientID, secret)
	if sc.lifetime > 0 {
		idp.SetLifetime(sc.lifetime)
	}
	var doc strings.Builder
	authority := idp.URL()
	if via != nil {
		authority = via(authority)
	}
	fmt.Fprintf(&doc, "authority_host = %q\nkeystore = \"memory\"\n%s\n[apps.partner]\nclient_id = %q\n", authority, sc.topTOML, clientID)
	for i := range sc.tenants {
		idp.AddTenant(entratest.Tenant{ID: tenantID(i), Domains: []string{fmt.Sprintf("tenant%d.onmicrosoft.com", i)}, ConsentedApps: []string{clientID}})
		fmt.Fprintf(&doc, "[tenants.tenant%d]\nid = %q\napp = \"partner\"\ndomains = [\"tenant%d.onmicrosoft.com\"]\n", i, tenantID(i), i)
	}
	doc.WriteString(sc.extraTOML)
	cfg, err := broker.ParseConfig("e2e.toml", []byte(doc.String()))
	if err != nil {
		t.Fatal(err)
	}
	store := keystore.NewMemory()
	stored := sc.secret
	if stored == "" {
		stored = secret
	}
	if err := store.Set(context.Background(), clientID, keystore.NewSecret(stored)); err != nil {
		t.Fatal(err)
	}
	logs := &logbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := broker.New(cfg, broker.Options{Store: store, HTTPClient: idp.Client(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)

	dir, err := os.MkdirTemp("", "tb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "brokerd.sock")
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
	return &stack{idp: idp, b: b, c: c, store: store, socket: path, logs: logs}
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// (a) 100 concurrent GetToken calls across 5 tenants on a cold start cause
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

// (b) With 20-second tokens over 60 seconds of steady calls, every token
// returned has at least min_valid left, each tenant is refreshed before
// expiry, and after warm-up no call waits for the IdP.
func TestSteadyRefresh(t *testing.T) {
	if testing.Short() {
		t.Skip("60-second steady-state run; not run with -short")
	}
	t.Parallel()
	const (
		tenants  = 3
		lifetime = 20 * time.Second
		minValid = 5 * time.Second
		run      = 60 * time.Second
	)
	s := newStack(t, stackConfig{tenants: tenants, lifetime: lifetime, topTOML: fmt.Sprintf("min_valid = %q", minValid)})
	waitFor(t, "every tenant ready", func() bool {
		list, err := s.c.ListTenants(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, ts := range list {
			if ts.GetState() != brokerv1.TenantState_TENANT_STATE_READY {
				return false
			}
		}
		return true
	})
	missesBefore := misses(t, s)

	type seen struct {
		first   time.Time
		expires time.Time
	}
	var (
		mu     sync.Mutex
		tokens = map[string]map[string]*seen{} // tenant -> token -> when
		calls  atomic.Int64
	)
	deadline := time.Now().Add(run)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				tenant := fmt.Sprintf("tenant%d", (w+i)%tenants)
				callCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				resp, err := s.c.GetToken(callCtx, tenant, nil, minValid)
				cancel()
				now := time.Now()
				if err != nil {
					t.Errorf("%s: %v", tenant, err)
					return
				}
				calls.Add(1)
				exp := resp.GetExpiresAt().AsTime()
				claims, err := entratest.Claims(resp.GetAccessToken())
				if err != nil {
					t.Errorf("%s: %v", tenant, err)
					return
				}
				jwtExp := time.Unix(int64(claims["exp"].(float64)), 0)
				if jwtExp.Before(exp) {
					exp = jwtExp
				}
				if left := exp.Sub(now); left < minValid-time.Second {
					// exp has one-second resolution; allow for it.
					t.Errorf("%s: token served with %v left, min_valid %v", tenant, left, minValid)
				}
				mu.Lock()
				if tokens[tenant] == nil {
					tokens[tenant] = map[string]*seen{}
				}
				if _, ok := tokens[tenant][resp.GetAccessToken()]; !ok {
					tokens[tenant][resp.GetAccessToken()] = &seen{first: now, expires: exp}
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	wg.Wait()

	after := misses(t, s)
	for name, n := range after {
		if n != missesBefore[name] {
			t.Errorf("%s: %d calls found no fresh token after warm-up, want 0", name, n-missesBefore[name])
		}
	}
	for i := range tenants {
		name := fmt.Sprintf("tenant%d", i)
		var list []*seen
		for _, v := range tokens[name] {
			list = append(list, v)
		}
		sortSeen := func(a, b *seen) int { return a.first.Compare(b.first) }
		slices.SortFunc(list, sortSeen)
		// 20 s tokens refreshed 8-10 s after issue: at least 5 new tokens
		// in 60 s, and never more than one per 5 s (no storm).
		if len(list) < 5 {
			t.Errorf("%s: %d distinct tokens in %v, want at least 5 (refreshes)", name, len(list), run)
		}
		for j := 1; j < len(list); j++ {
			if !list[j].first.Before(list[j-1].expires) {
				t.Errorf("%s: token %d first served at %v, after its predecessor expired at %v", name, j, list[j].first, list[j-1].expires)
			}
		}
		if got := s.idp.TokenRequests(tenantID(i)); got > 14 {
			t.Errorf("%s: %d token requests in %v, want at most 14", name, got, run)
		}
	}
	t.Logf("%d calls; tokens per tenant: %d %d %d", calls.Load(), len(tokens["tenant0"]), len(tokens["tenant1"]), len(tokens["tenant2"]))
}

func misses(t *testing.T, s *stack) map[string]uint64 {
	list, err := s.c.ListTenants(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]uint64{}
	for _, ts := range list {
		m[ts.GetName()] = ts.GetCacheMisses()
	}
	return m
}

// (c) A wrong secret is FAILED_PRECONDITION naming AADSTS7000215 and what
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

// (d) Unknown tenant: NOT_FOUND. Not consented: FAILED_PRECONDITION with
// the admin consent URL.
func TestTenantErrors(t *testing.T) {
	t.Parallel()
	const ghost = "99999999-0000-4000-8000-000000000009"
	const unconsented = "88888888-0000-4000-8000-000000000008"
	s := newStack(t, stackConfig{tenants: 1, noPrefetch: true, extraTOML: fmt.Sprintf(
		"[tenants.ghost]\nid = %q\n[tenants.newcustomer]\nid = %q\n", ghost, unconsented)})
	s.idp.AddTenant(entratest.Tenant{ID: unconsented})

	_, err := s.c.GetToken(ctx(t), "nosuchtenant", nil, 0)
	wantStatus(t, err, codes.NotFound, `tenant "nosuchtenant" is not configured`, "ghost, newcustomer, tenant0")

	_, err = s.c.GetToken(ctx(t), "ghost", nil, 0)
	wantStatus(t, err, codes.NotFound, "AADSTS90002", "check the tenant id")

	_, err = s.c.GetToken(ctx(t), "newcustomer", nil, 0)
	consent := fmt.Sprintf("%s/%s/adminconsent?client_id=%s", s.idp.URL(), unconsented, clientID)
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
	s := newStack(t, stackConfig{tenants: 1, lifetime: 30 * time.Second})
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
		{"min_valid beyond token lifetime", "tenant0", nil, time.Minute, codes.InvalidArgument, "min_valid 1m0s is longer than"},
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

	_, err = s.c.SetCredential(ctx(t), "partner", wrong)
	wantStatus(t, err, codes.FailedPrecondition, "AADSTS7000215", "was not stored")
	if got, _ := s.store.Get(context.Background(), clientID); got.Reveal() != secret {
		t.Error("a rejected secret replaced the stored one")
	}
	if _, err := s.c.GetToken(ctx(t), "tenant1", nil, 0); err != nil {
		t.Errorf("GetToken after a rejected secret: %v", err)
	}

	_, err = s.c.SetCredential(ctx(t), "nosuchapp", secret)
	wantStatus(t, err, codes.NotFound, `app "nosuchapp" is not configured`, "partner")
	_, err = s.c.SetCredential(ctx(t), "partner", "")
	wantStatus(t, err, codes.InvalidArgument, "empty")

	// Rotation: Entra ID now expects a new secret; the old one stops working.
	const rotated = "rotated-secret-Q~2222222222222222222222222"
	s.idp.AddApp(clientID, rotated)
	resp, err := s.c.SetCredential(ctx(t), "partner", rotated)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetVerifiedWithTenant() != "tenant0" {
		t.Errorf("verified_with_tenant = %q", resp.GetVerifiedWithTenant())
	}
	if got, _ := s.store.Get(context.Background(), clientID); got.Reveal() != rotated {
		t.Error("the verified secret was not stored")
	}
	// Every tenant of the app is re-acquired with the new secret.
	waitFor(t, "a new token for tenant0", func() bool {
		tok, err := s.c.GetToken(ctx(t), "tenant0", nil, 0)
		return err == nil && tok.GetAccessToken() != first.GetAccessToken()
	})
	for _, leak := range []string{wrong, rotated, secret} {
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
