package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

const graph = "https://graph.microsoft.com/.default"

// junk is the i-th of the scopes a hostile caller cycles through.
func junk(i int) string { return fmt.Sprintf("api://junk%d/.default", i) }

// worldAllowing is a World of one tenant whose app allows the given
// scopes or resources besides its own scope.
func worldAllowing(t *testing.T, allowed ...string) *brokertest.World {
	t.Helper()
	w := brokertest.NewWorld(t, 1)
	w.Apps[0].Extra = []string{fmt.Sprintf("allowed_scopes = [%q, %s]", broker.DefaultScope, quoted(allowed))}
	return w
}

func quoted(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// issuedFor counts the tokens the fake Entra ID issued for a scope's
// resource.
func issuedFor(t *testing.T, idp *entratest.Server, scope string) int {
	t.Helper()
	aud := strings.TrimSuffix(scope, "/.default")
	n := 0
	for _, tok := range idp.Issued() {
		c, err := entratest.Claims(tok)
		if err != nil {
			t.Fatal(err)
		}
		if c["aud"] == aud {
			n++
		}
	}
	return n
}

func (h *harness) getScopes(name string, minValid time.Duration, scopes ...string) (*broker.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.b.GetToken(ctx, broker.TokenRequest{Tenant: name, Scopes: scopes, MinValid: minValid})
}

// A scope outside allowed_scopes is PERMISSION_DENIED naming the scope and
// the key that would allow it, however many scopes come with it: nothing
// is kept or sent. More scopes than limits.max_scopes are refused before
// any is looked at. Duplicates of an allowed scope are one scope set, and
// one scope reaches Entra ID.
func TestScopeOutsideAllowedScopesIsDenied(t *testing.T) {
	t.Parallel()
	w := worldAllowing(t, "https://graph.microsoft.com")
	h := newHarness(t, w, 0)
	h.b.Start()
	h.settle()
	before := h.requests(0)

	_, err := h.getScopes("tenant0", 0, "https://management.azure.com/.default")
	wantError(t, err, broker.KindPermissionDenied, `scope "https://management.azure.com/.default" is not allowed for tenant tenant0's app partner`,
		"an administrator can add it to apps.partner.allowed_scopes")
	// Within limits.max_scopes, one scope outside the list refuses them all.
	few := []string{graph, junk(0), junk(1)}
	_, err = h.getScopes("tenant0", 0, few...)
	wantError(t, err, broker.KindPermissionDenied, junk(0), "apps.partner.allowed_scopes")
	// Past it, the request is refused before any scope is looked at.
	many := make([]string, 5000)
	for i := range many {
		many[i] = junk(i)
	}
	_, err = h.getScopes("tenant0", 0, many...)
	wantError(t, err, broker.KindInvalidArgument, "5000 scopes are more than limits.max_scopes (8)")
	_, err = h.getScopes("tenant0", 0, graph, "https://management.azure.com/.default")
	wantError(t, err, broker.KindPermissionDenied, "management.azure.com")
	if got := h.requests(0); got != before {
		t.Errorf("%d token requests for refused scopes", got-before)
	}
	if got := broker.ScopeSets(h.b, "tenant0"); got != 1 {
		t.Errorf("tenant0 keeps %d scope sets after refusals, want 1", got)
	}

	copies := make([]string, 8)
	for i := range copies {
		copies[i] = graph
	}
	tok, err := h.getScopes("tenant0", 0, copies...)
	if err != nil {
		t.Fatal(err)
	}
	if len(tok.Scopes) != 1 || tok.Scopes[0] != graph || h.requests(0) != before+1 || broker.ScopeSets(h.b, "tenant0") != 2 {
		t.Errorf("8 copies of an allowed scope: scopes %d, %d requests, %d scope sets; want one of each",
			len(tok.Scopes), h.requests(0)-before, broker.ScopeSets(h.b, "tenant0"))
	}
	// Scopes compare exactly.
	_, err = h.getScopes("tenant0", 0, "https://GRAPH.microsoft.com/.default")
	wantError(t, err, broker.KindPermissionDenied, "GRAPH")
}

// Ten junk scope sets cannot lock a legitimate one out for good: past
// limits.max_scope_sets a new set is RESOURCE_EXHAUSTED, and sets with no
// request for two token lifetimes stop being refreshed and are dropped,
// which frees their places; a set in use is kept and refreshed, and the
// app's own scopes are never dropped.
func TestUnusedScopeSetsAreDropped(t *testing.T) {
	t.Parallel()
	allowed := []string{graph}
	for i := range 10 {
		allowed = append(allowed, junk(i))
	}
	w := worldAllowing(t, allowed...)
	h := newHarness(t, w, 0) // limits.max_scope_sets is 8; tokens last an hour
	h.b.Start()
	h.settle()

	for i := range 10 {
		_, err := h.getScopes("tenant0", 0, junk(i))
		if i < broker.DefaultMaxScopeSets {
			if err != nil {
				t.Fatalf("junk set %d: %v", i, err)
			}
			continue
		}
		wantError(t, err, broker.KindResourceExhausted, "tenant tenant0 already keeps 8 scope sets", "limits.max_scope_sets")
	}
	_, err := h.getScopes("tenant0", 0, graph)
	wantError(t, err, broker.KindResourceExhausted, "limits.max_scope_sets")
	if got := issuedFor(t, w.IdP, graph); got != 0 {
		t.Errorf("%d tokens issued for a refused scope set", got)
	}

	// Unused, each junk set but junk0 (asked for every 15 minutes) is
	// refreshed while it has been unused for less than two lifetimes
	// (every 39 to 45 minutes, with jitter: two or three times), then
	// dropped at its next refresh instead of refreshed.
	useFor := func(d time.Duration) {
		for end := h.clk.Now().Add(d); h.clk.Now().Before(end); {
			h.advance(15 * time.Minute)
			if _, err := h.getScopes("tenant0", 0, junk(0)); err != nil {
				t.Fatalf("the scope set in use: %v", err)
			}
		}
	}
	unusedTokens := func() int {
		n := 0
		for i := 1; i < 10; i++ {
			n += issuedFor(t, w.IdP, junk(i))
		}
		return n
	}
	useFor(3 * time.Hour)
	atDrop := unusedTokens()
	if atDrop > 7*4 {
		t.Errorf("%d tokens for 7 unused junk sets in 3 hours, want at most 28 (the first and at most three refreshes each)", atDrop)
	}
	if got := broker.ScopeSets(h.b, "tenant0"); got != 2 {
		t.Errorf("tenant0 keeps %d scope sets after 3 hours, want 2 (its app's and the one in use)", got)
	}
	useFor(3 * time.Hour)
	if got := unusedTokens(); got != atDrop {
		t.Errorf("%d junk tokens after the sets were dropped", got-atDrop)
	}
	if got := issuedFor(t, w.IdP, junk(0)); got < 6 {
		t.Errorf("%d tokens in 6 hours for the scope set in use, want a refresh each hour or so", got)
	}
	if got := broker.ScopeSets(h.b, "tenant0"); got != 2 {
		t.Errorf("tenant0 keeps %d scope sets after 6 hours, want 2", got)
	}
	if !strings.Contains(h.logs.String(), "unused scope set dropped") {
		t.Error("no log line says an unused scope set was dropped")
	}

	st := h.status("tenant0")
	wantState(t, st, broker.StateReady)
	if st.IdPRequests != uint64(h.requests(0)) {
		t.Errorf("ListTenants counts %d IdP requests, the IdP saw %d: the dropped sets' counters were lost", st.IdPRequests, h.requests(0))
	}
	if tok, err := h.getScopes("tenant0", 0, graph); err != nil || tok.Scopes[0] != graph {
		t.Fatalf("the legitimate scope set after the junk was dropped: %v", err)
	}
}

// A caller that found a scope set just before the run loop dropped it
// gets a token all the same, from the set kept anew; nothing is acquired
// on the dropped entry.
func TestCallerOnDroppedScopeSet(t *testing.T) {
	t.Parallel()
	w := worldAllowing(t, graph)
	h := newHarness(t, w, 0)
	h.b.Start()
	h.settle()
	first, err := h.getScopes("tenant0", 0, graph)
	if err != nil {
		t.Fatal(err)
	}
	wait, flew := broker.DropScopeSet(t, h.b, "tenant0", []string{graph})
	if got := broker.ScopeSets(h.b, "tenant0"); got != 1 {
		t.Fatalf("%d scope sets after the drop", got)
	}
	tok, err := wait(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == first.AccessToken || tok.Scopes[0] != graph {
		t.Error("the caller was not answered from the set kept anew")
	}
	if flew() {
		t.Error("an acquisition started on the dropped entry")
	}
	if got := broker.ScopeSets(h.b, "tenant0"); got != 2 {
		t.Errorf("%d scope sets after the caller, want the set kept anew", got)
	}
	if again, err := h.getScopes("tenant0", 0, graph); err != nil || again.AccessToken != tok.AccessToken {
		t.Errorf("the set kept anew does not serve its token: %v", err)
	}
}

// `--min-valid 59m59.99s` in a loop: refused as more than half the token
// lifetime, with the usable maximum, and Entra ID is not asked again.
func TestMinValidOverHalfTheLifetimeIsRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 1)
	h.b.Start()
	h.settle()
	before := h.requests(0)
	for range 300 {
		_, err := h.get("tenant0", 59*time.Minute+59990*time.Millisecond)
		wantError(t, err, broker.KindInvalidArgument,
			"min_valid 59m59.99s is more than half of tenant tenant0's token lifetime (1h0m0s); ask for at most 30m0s")
		h.clk.Advance(time.Second)
	}
	if got := h.requests(0) - before; got != 0 {
		t.Errorf("%d token requests for a min_valid over half the lifetime", got)
	}
	if _, err := h.get("tenant0", 30*time.Minute); err != nil {
		t.Errorf("the maximum the error names is refused: %v", err)
	}
}

// A caller whose min_valid makes a young token not good enough, in a loop:
// Entra ID is asked at most once per limits.reacquire_interval, and the
// caller is told when to come back. Tokens last 80 s and are refreshed
// 67-75 s after they arrive; a caller asking for 40 s left would otherwise
// send the tenant back to Entra ID every 40 s.
func TestMinValidReacquiresAtMostOncePerInterval(t *testing.T) {
	t.Parallel()
	h := eightySecondTokens(t, 0)
	before := h.requests(0)
	served, refused := 0, 0
	for range 10 * 60 {
		h.clk.Advance(time.Second)
		tok, err := h.get("tenant0", 40*time.Second)
		if err != nil {
			wantError(t, err, broker.KindUnavailable, "younger than limits.reacquire_interval (1m0s)", "retry at")
			refused++
			continue
		}
		if left := tok.ExpiresAt.Sub(h.clk.Now()); left < 40*time.Second {
			t.Fatalf("served a token with %v left for min_valid 40s", left)
		}
		served++
	}
	h.settle()
	got := h.requests(0) - before
	if got > 10 {
		t.Errorf("%d token requests in 10 minutes, want at most one a minute", got)
	}
	if got < 9 || refused == 0 || served < 350 {
		t.Errorf("%d token requests, %d calls served and %d refused: the caller was not served as often as the limit allows", got, served, refused)
	}
}

// A client-credentials token is for one resource: a request naming two
// different scopes, each allowed, is refused before a scope set is made or
// Entra ID (which would refuse it) is asked, so combinations of allowed
// scopes cannot fill a tenant's scope sets.
func TestOneResourcePerRequest(t *testing.T) {
	t.Parallel()
	w := worldAllowing(t, graph, junk(0))
	h := newHarness(t, w, 0)
	h.b.Start()
	h.settle()
	before := h.requests(0)
	_, err := h.getScopes("tenant0", 0, graph, junk(0))
	wantError(t, err, broker.KindInvalidArgument, "2 different scopes in one request", "one /.default scope per request")
	_, err = h.getScopes("tenant0", 0, broker.DefaultScope, graph)
	wantError(t, err, broker.KindInvalidArgument, "2 different scopes")
	if got := h.requests(0); got != before {
		t.Errorf("%d token requests for refused scope combinations", got-before)
	}
	if got := broker.ScopeSets(h.b, "tenant0"); got != 1 {
		t.Errorf("tenant0 keeps %d scope sets after refusals, want 1", got)
	}
	if _, err := h.getScopes("tenant0", 0, graph, graph); err != nil {
		t.Errorf("one scope named twice: %v", err)
	}
}
