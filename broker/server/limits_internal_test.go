package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/fakeclock"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// A connection cycling through distinct tenant strings keeps one entry per
// resolved tenant: every unknown name shares one, and each name, id or
// domain of a tenant shares the tenant's. Before, every distinct string
// (up to megabytes each) was an entry of its own.
func TestDecisionCacheKeyedByResolvedTenant(t *testing.T) {
	w := brokertest.NewWorld(t, 2)
	var logs brokertest.LogBuffer
	b := w.NewBroker(t, broker.Options{Logger: brokertest.DebugLogger(&logs)}, "allow_uids = [65534]")
	a := &authorizer{b: b, limits: b.Limits(), audit: brokertest.DebugLogger(&logs)}
	call := func(p *Peer, tenant string) error {
		ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: p})
		return a.authorize(ctx, brokerService+"GetToken", &brokerv1.GetTokenRequest{Tenant: tenant})
	}
	for _, tc := range []struct {
		name   string
		caller broker.Caller
		want   codes.Code
	}{
		{"root", broker.Caller{UID: 0}, codes.OK},
		{"nobody", broker.Caller{UID: 65534, GID: 65534}, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Peer{Caller: tc.caller}
			for i := range 5000 {
				if err := call(p, fmt.Sprintf("unknown-%d.example", i)); status.Code(err) != tc.want {
					t.Fatalf("unknown tenant %d: %v, want %v", i, err, tc.want)
				}
			}
			if n := p.auditedTenants(); n != 1 {
				t.Errorf("5000 unknown names left %d entries, want 1", n)
			}
			for _, name := range []string{"tenant0", "TENANT0", brokertest.TenantID(0), "tenant0.onmicrosoft.com", "Tenant0.OnMicrosoft.com"} {
				if err := call(p, name); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
			}
			if n := p.auditedTenants(); n != 2 {
				t.Errorf("five names of one tenant: %d entries, want 2", n)
			}
		})
	}
	// One audit line per connection and resolved tenant.
	if n := strings.Count(logs.String(), "msg=audit rpc=GetToken"); n != 4 {
		t.Errorf("%d audit lines, want 4 (two connections, two keys each):\n%s", n, logs.String())
	}
}

// The per-connection cache has a bound: past maxAudited tenants, each
// decision is audited again instead of remembered.
func TestDecisionCacheBounded(t *testing.T) {
	p := &Peer{}
	for i := range maxAudited + 10 {
		if !p.firstDecision(fmt.Sprint(i), 1) {
			t.Fatalf("tenant %d: not a first decision", i)
		}
	}
	if p.auditedTenants() != maxAudited || !p.firstDecision(fmt.Sprint(maxAudited+1), 1) || p.firstDecision("0", 1) || !p.firstDecision("0", 2) || p.firstDecision("0", 2) {
		t.Errorf("%d entries; want %d, the first ones remembered and later ones audited every time", p.auditedTenants(), maxAudited)
	}
}

// The denial limiter lets n events per uid and minute through, reports the
// rest once the window ends or the limiter closes, and keeps its per-uid
// state bounded.
func TestUIDLimiter(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	type report struct {
		uid  uint32
		held int
	}
	reports := make(chan report, 10)
	l := newUIDLimiter(clock, 3, time.Minute, func(uid uint32, held int) { reports <- report{uid, held} })
	allowed := 0
	for range 50 {
		if l.allow(7) {
			allowed++
		}
	}
	if allowed != 3 || !l.allow(8) {
		t.Fatalf("%d of 50 events let through, want 3; another uid must not be held back", allowed)
	}
	clock.Advance(59 * time.Second)
	if l.allow(7) {
		t.Error("an event within the minute was let through")
	}
	select {
	case r := <-reports:
		t.Fatalf("reported %+v before the window ended", r)
	default:
	}
	clock.Advance(time.Second)
	if r := <-reports; r != (report{7, 48}) {
		t.Errorf("report %+v, want uid 7 held 48", r)
	}
	// A new window: three more, and close reports what it holds back.
	for i := range 5 {
		if got := l.allow(7); got != (i < 3) {
			t.Errorf("new window, event %d: allow = %v", i, got)
		}
	}
	l.close()
	select {
	case r := <-reports:
		if r != (report{7, 2}) {
			t.Errorf("report on close %+v, want uid 7 held 2", r)
		}
	default:
		t.Error("close did not report the held-back events")
	}
	if !l.allow(7) {
		t.Error("a closed limiter holds events back")
	}

	// Bounded: past maxLimitedUIDs uids, ended windows are swept, and with
	// none to sweep new uids are let through untracked.
	l = newUIDLimiter(clock, 1, time.Minute, func(uint32, int) {})
	defer l.close()
	for uid := range uint32(maxLimitedUIDs + 100) {
		if !l.allow(uid) {
			t.Fatalf("first event of uid %d held back", uid)
		}
	}
	l.mu.Lock()
	n := len(l.uids)
	l.mu.Unlock()
	if n != maxLimitedUIDs {
		t.Errorf("%d uids tracked, want %d", n, maxLimitedUIDs)
	}
	clock.Advance(time.Minute)
	l.allow(1 << 20)
	l.mu.Lock()
	n = len(l.uids)
	l.mu.Unlock()
	if n != 1 {
		t.Errorf("after the windows ended, %d uids tracked, want 1", n)
	}
}

// Many uids' events at once, with the clock moving: every event is either
// let through or counted in exactly one report.
func TestUIDLimiterCountsEveryEvent(t *testing.T) {
	clock := fakeclock.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var mu sync.Mutex
	held := 0
	l := newUIDLimiter(clock, 2, time.Minute, func(_ uint32, n int) { mu.Lock(); held += n; mu.Unlock() })
	var wg sync.WaitGroup
	var passed sync.Map
	for uid := range uint32(8) {
		wg.Go(func() {
			p := 0
			for i := range 500 {
				if l.allow(uid) {
					p++
				}
				if i%100 == 0 {
					clock.Advance(20 * time.Second)
				}
			}
			passed.Store(uid, p)
		})
	}
	wg.Wait()
	l.close()
	sum := 0
	passed.Range(func(_, v any) bool { sum += v.(int); return true })
	if sum+held != 8*500 {
		t.Errorf("%d let through + %d reported = %d, want %d", sum, held, sum+held, 8*500)
	}
}

// Connections count per uid and in total; admins count against their own
// cap but not the total, so they can always get in; closing uncounts.
func TestConnLimits(t *testing.T) {
	cl := newConnLimits(broker.Limits{MaxConnections: 3, MaxConnectionsPerUID: 2})
	a, b, root := broker.Caller{UID: 1000}, broker.Caller{UID: 1001}, broker.Caller{UID: 0}
	steps := []struct {
		c    broker.Caller
		want string
	}{
		{a, ""}, {a, ""}, {a, "limits.max_connections_per_uid"},
		{b, ""}, {b, "limits.max_connections"},
		{root, ""}, {root, ""}, {root, "limits.max_connections_per_uid"},
	}
	for i, s := range steps {
		if key, _ := cl.open(s.c); key != s.want {
			t.Fatalf("step %d, uid %d: over %q, want %q", i, s.c.UID, key, s.want)
		}
	}
	cl.closed(a)
	if key, _ := cl.open(b); key != "" {
		t.Errorf("after a close: over %q", key)
	}
	for _, c := range []broker.Caller{a, b, b, root, root} {
		cl.closed(c)
	}
	if len(cl.byUID) != 0 || cl.total != 0 {
		t.Errorf("all closed: %v, total %d", cl.byUID, cl.total)
	}
}

// The daemon warns at start when its open file limit cannot hold what the
// connection limits allow.
func TestCheckFileLimit(t *testing.T) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < 2*fdHeadroom {
		t.Fatalf("RLIMIT_NOFILE %d is too low for this test", rl.Cur)
	}
	for _, tc := range []struct {
		max  int
		warn bool
	}{{int(rl.Cur), true}, {int(rl.Cur) - fdHeadroom - 2, false}} {
		var logs brokertest.LogBuffer
		checkFileLimit(broker.Limits{MaxConnections: tc.max, MaxConnectionsPerUID: 1}, brokertest.DebugLogger(&logs))
		if got := strings.Contains(logs.String(), "raise LimitNOFILE"); got != tc.warn {
			t.Errorf("max_connections %d with RLIMIT_NOFILE %d: warned %v, want %v: %s", tc.max, rl.Cur, got, tc.warn, logs.String())
		}
	}
}
