package server_test

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// tcpProxy stands between the broker and the fake Entra ID so that tests
// can refuse connections or swap in a server whose certificate the broker
// does not trust.
type tcpProxy struct {
	l net.Listener

	mu      sync.Mutex
	backend string
	conns   map[net.Conn]bool
}

func newTCPProxy(t testing.TB, backendURL string) *tcpProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{l: l, backend: hostOf(t, backendURL), conns: map[net.Conn]bool{}}
	t.Cleanup(p.refuse)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func hostOf(t testing.TB, u string) string {
	t.Helper()
	parsed, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return parsed.Host
}

func (p *tcpProxy) URL() string { return "https://" + p.l.Addr().String() }

func (p *tcpProxy) serve(c net.Conn) {
	p.mu.Lock()
	backend := p.backend
	p.mu.Unlock()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[b] = true, true
	p.mu.Unlock()
	go func() { io.Copy(b, c); b.Close() }()
	io.Copy(c, b)
	c.Close()
}

// dropConns closes every proxied connection, so the broker reconnects.
func (p *tcpProxy) dropConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// refuse closes the listener: new connections are refused.
func (p *tcpProxy) refuse() {
	p.l.Close()
	p.dropConns()
}

// swap sends new connections to another server.
func (p *tcpProxy) swap(t *testing.T, backendURL string) {
	p.mu.Lock()
	p.backend = hostOf(t, backendURL)
	p.mu.Unlock()
	p.dropConns()
}

func tenantStatus(t *testing.T, s *stack, name string) *brokerv1.TenantStatus {
	t.Helper()
	list, err := s.c.ListTenants(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range list {
		if ts.GetName() == name {
			return ts
		}
	}
	t.Fatalf("no tenant %s", name)
	return nil
}

// The fault matrix: with 20-second tokens and min_valid 4 s, a fault from
// the first refresh on. Callers get the cached token while it has min_valid
// left, then UNAVAILABLE naming the cause; meanwhile the IdP sees a bounded
// number of requests (backoff, Retry-After respected).
func TestFaultMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("about 20 s per case; not run with -short")
	}
	t.Parallel()
	const (
		lifetime = 20 * time.Second
		minValid = 4 * time.Second
	)
	untrusted, err := entratest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(untrusted.Close)

	tests := []struct {
		name   string
		inject func(t *testing.T, s *stack, p *tcpProxy)
		msg    string
		// maxAttempts bounds the broker's token requests from the fault
		// until the end of the window: backoff from 0.5-1 s doubling, or
		// the IdP's Retry-After.
		maxAttempts uint64
	}{
		{"connection refused", func(t *testing.T, s *stack, p *tcpProxy) { p.refuse() }, "connection refused", 6},
		{"slower than idp_timeout", func(t *testing.T, s *stack, p *tcpProxy) {
			s.idp.SetFault("", &entratest.Fault{Delay: time.Minute})
		}, "did not answer within the token request timeout", 6},
		{"500", func(t *testing.T, s *stack, p *tcpProxy) { s.idp.SetFault("", &entratest.Fault{Status: 500}) }, "(HTTP 500)", 6},
		{"503 with Retry-After", func(t *testing.T, s *stack, p *tcpProxy) {
			s.idp.SetFault("", &entratest.Fault{Status: 503, RetryAfter: "120"})
		}, "AADSTS90033", 1},
		{"429 with Retry-After", func(t *testing.T, s *stack, p *tcpProxy) {
			s.idp.SetFault("", &entratest.Fault{Status: 429, RetryAfter: time.Now().Add(2 * time.Minute).UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT")})
		}, "throttl", 1},
		{"malformed body", func(t *testing.T, s *stack, p *tcpProxy) {
			s.idp.SetFault("", &entratest.Fault{Status: 200, Body: `{"access_token": "x", "expires_in": `})
		}, "unusable token response", 6},
		{"wrong tid", func(t *testing.T, s *stack, p *tcpProxy) {
			s.idp.SetFault("", &entratest.Fault{WrongTenantID: tenantID(77)})
		}, tenantID(77), 6},
		{"TLS certificate not trusted", func(t *testing.T, s *stack, p *tcpProxy) { p.swap(t, untrusted.URL()) }, "not trusted", 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var p *tcpProxy
			s := newStackVia(t, stackConfig{tenants: 1, lifetime: lifetime, topTOML: "idp_timeout = \"2s\"\nmin_valid = \"4s\""}, func(real string) string {
				p = newTCPProxy(t, real)
				return p.URL()
			})
			first, err := s.c.GetToken(ctx(t), "tenant0", nil, minValid)
			if err != nil {
				t.Fatal(err)
			}
			before := tenantStatus(t, s, "tenant0").GetIdpRequests()
			idpBefore := s.idp.TokenRequests(tenantID(0))
			tt.inject(t, s, p)

			sawDegraded := false
			var failure error
			waitFor(t, "the cached token to run out", func() bool {
				resp, err := s.c.GetToken(ctx(t), "tenant0", nil, minValid)
				if err != nil {
					failure = err
					return true
				}
				if resp.GetAccessToken() != first.GetAccessToken() {
					t.Fatalf("a new token was served during the fault")
				}
				if left := time.Until(resp.GetExpiresAt().AsTime()); left < minValid {
					t.Fatalf("served a token with %v left, min_valid %v", left, minValid)
				}
				if st := tenantStatus(t, s, "tenant0"); st.GetState() == brokerv1.TenantState_TENANT_STATE_DEGRADED {
					sawDegraded = true
					if !strings.Contains(st.GetLastError(), tt.msg) || st.GetNextRefresh() == nil {
						t.Errorf("degraded status: %q, next %v", st.GetLastError(), st.GetNextRefresh())
					}
				}
				time.Sleep(100 * time.Millisecond)
				return false
			})
			wantStatus(t, failure, codes.Unavailable, tt.msg)
			if !sawDegraded {
				t.Error("tenants never showed the tenant degraded while its token was still served")
			}
			if st := tenantStatus(t, s, "tenant0"); st.GetState() != brokerv1.TenantState_TENANT_STATE_FAILED {
				t.Errorf("state after the token ran out: %v", st.GetState())
			}
			// A few more seconds of callers: they get the recorded error,
			// they do not each reach the IdP.
			for range 20 {
				_, err := s.c.GetToken(ctx(t), "tenant0", nil, minValid)
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("during the fault: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			attempts := tenantStatus(t, s, "tenant0").GetIdpRequests() - before
			received := s.idp.TokenRequests(tenantID(0)) - idpBefore
			t.Logf("%s: %d attempts, %d reached the IdP", tt.name, attempts, received)
			if attempts < 1 || attempts > tt.maxAttempts || uint64(received) > attempts {
				t.Errorf("%d token request attempts (%d received) during the fault, want 1 to %d", attempts, received, tt.maxAttempts)
			}
		})
	}
}

// A tenant whose consent is revoked shows AADSTS700016 with the consent URL
// in tenants and in get, is retried only by the slow policy, and the other
// tenants keep working.
func TestRevokedConsent(t *testing.T) {
	if testing.Short() {
		t.Skip("about 20 s; not run with -short")
	}
	t.Parallel()
	const minValid = 4 * time.Second
	s := newStack(t, stackConfig{tenants: 2, lifetime: 20 * time.Second, topTOML: `min_valid = "4s"`})
	if _, err := s.c.GetToken(ctx(t), "tenant0", nil, minValid); err != nil {
		t.Fatal(err)
	}
	if _, err := s.c.GetToken(ctx(t), "tenant1", nil, minValid); err != nil {
		t.Fatal(err)
	}
	before0, before1 := s.idp.TokenRequests(tenantID(0)), s.idp.TokenRequests(tenantID(1))
	s.idp.SetConsent(tenantID(0), clientID, false)
	consent := s.idp.URL() + "/" + tenantID(0) + "/adminconsent?client_id=" + clientID

	var failure error
	waitFor(t, "tenant0's token to run out", func() bool {
		if _, err := s.c.GetToken(ctx(t), "tenant1", nil, minValid); err != nil {
			t.Fatalf("tenant1 during tenant0's consent problem: %v", err)
		}
		_, failure = s.c.GetToken(ctx(t), "tenant0", nil, minValid)
		time.Sleep(100 * time.Millisecond)
		return failure != nil
	})
	wantStatus(t, failure, codes.FailedPrecondition, "AADSTS700016", consent)
	st := tenantStatus(t, s, "tenant0")
	if st.GetState() != brokerv1.TenantState_TENANT_STATE_FAILED || !strings.Contains(st.GetLastError(), "AADSTS700016") ||
		!strings.Contains(st.GetLastError(), consent) {
		t.Errorf("tenants: %v %q", st.GetState(), st.GetLastError())
	}
	if next := st.GetNextRefresh().AsTime(); time.Until(next) < 5*time.Minute {
		t.Errorf("next attempt in %v; a permanent error is retried only every 10 minutes", time.Until(next))
	}
	if got := s.idp.TokenRequests(tenantID(0)) - before0; got != 1 {
		t.Errorf("tenant0: %d token requests after the revocation, want exactly 1 (the failed refresh)", got)
	}
	if got := s.idp.TokenRequests(tenantID(1)) - before1; got < 1 {
		t.Error("tenant1 was not refreshed while tenant0 failed")
	}
	if st := tenantStatus(t, s, "tenant1"); st.GetState() != brokerv1.TenantState_TENANT_STATE_READY {
		t.Errorf("tenant1: %v", st.GetState())
	}
}

// Many acquisitions falling due at once (after a suspend, or a cold start
// with many callers) queue for max_idp_requests slots instead of storming
// the IdP; every caller still gets its token.
func TestIdPRequestsBounded(t *testing.T) {
	t.Parallel()
	const tenants = 40
	s := newStack(t, stackConfig{tenants: tenants, noPrefetch: true, topTOML: "max_idp_requests = 4"})
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
