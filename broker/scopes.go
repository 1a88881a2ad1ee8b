package broker

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// The scope policy: which scope sets callers may make a tenant keep.
//
// Every scope a caller names must be in its app's allowed_scopes (or its
// scopes). Scopes compare exactly, as the canonical strings ValidateScope
// accepts: "HTTPS://Graph.microsoft.com/.default" is not
// "https://graph.microsoft.com/.default", and is refused rather than
// guessed at. A scope set other than the app's scopes (an extra set) takes
// one of the tenant's limits.max_scope_sets places, and gives it back once
// it has had no request for unusedLifetimes token lifetimes: it is then
// dropped when its next acquisition falls due instead of being acquired.

// unusedLifetimes is how many token lifetimes an extra scope set is kept
// without a request.
const unusedLifetimes = 2

// assumedLifetime is the token lifetime an extra scope set is judged by
// while neither it nor its tenant's app scopes has a token yet: Entra ID's
// shortest default.
const assumedLifetime = time.Hour

// scopeKey identifies a scope set whatever the order of its scopes.
func scopeKey(scopes []string) string { return strings.Join(canonicalScopes(scopes), " ") }

// canonicalScopes is a sorted copy of scopes without duplicates.
func canonicalScopes(scopes []string) []string {
	scopes = slices.Clone(scopes)
	sort.Strings(scopes)
	return slices.Compact(scopes)
}

// allowScopes checks a caller's scopes against the tenant's app and
// returns them canonical: each must be a valid scope (INVALID_ARGUMENT)
// and an allowed one (PERMISSION_DENIED).
func allowScopes(t *tenant, scopes []string) ([]string, *Error) {
	for _, s := range scopes {
		if err := ValidateScope(s); err != nil {
			return nil, &Error{Kind: KindInvalidArgument, Msg: err.Error()}
		}
		if _, ok := slices.BinarySearch(t.app.allowed, s); !ok {
			return nil, errorf(KindPermissionDenied, "scope %q is not allowed for tenant %s's app %s; an administrator can add it to apps.%s.allowed_scopes",
				s, t.name, t.app.name, t.app.name)
		}
	}
	canon := canonicalScopes(scopes)
	if len(canon) > 1 {
		return nil, errorf(KindInvalidArgument, "%d different scopes in one request: a client-credentials token is for one resource, so ask for one /.default scope per request", len(canon))
	}
	return canon, nil
}

// entry is the kept entry of a canonical scope set, nil if there is none.
// It takes no lock.
func (t *tenant) entry(scopes []string) *entry {
	return (*t.entries.Load())[strings.Join(scopes, " ")]
}

// addEntry returns the entry of a canonical scope set, adding it if the
// tenant has room for another extra scope set.
func (b *Broker) addEntry(t *tenant, scopes []string) (*entry, *Error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.entryLocked(t, scopes)
}

// entryLocked is addEntry with mu held.
func (b *Broker) entryLocked(t *tenant, scopes []string) (*entry, *Error) {
	if t.removed {
		return nil, errTenantRemoved(t)
	}
	key := strings.Join(scopes, " ")
	kept := *t.entries.Load()
	if e := kept[key]; e != nil {
		return e, nil
	}
	if limit := b.world().cfg.limits.MaxScopeSets; len(kept)-1 >= limit {
		return nil, errorf(KindResourceExhausted,
			"tenant %s already keeps %d scope sets besides its app's scopes (limits.max_scope_sets); "+
				"an unused one is dropped after %d token lifetimes without a request, or an administrator can raise limits.max_scope_sets",
			t.name, limit, unusedLifetimes)
	}
	e := &entry{t: t, scopes: scopes}
	e.task = task{index: -1, entry: e}
	e.lastUse.Store(b.clock.Now().UnixNano())
	next := maps.Clone(kept)
	next[key] = e
	t.entries.Store(&next)
	return e, nil
}

// unusedLocked reports whether e is an extra scope set that has had no
// request for unusedLifetimes token lifetimes. mu is held.
func (e *entry) unusedLocked(now time.Time) bool {
	if e == e.t.def {
		return false
	}
	return now.Sub(time.Unix(0, e.lastUse.Load())) >= unusedLifetimes*e.lifetime()
}

// lifetime is the lifetime of e's last token, else of its tenant's app
// scopes' last token, else assumedLifetime.
func (e *entry) lifetime() time.Duration {
	for _, x := range []*entry{e, e.t.def} {
		if tok := x.tok.Load(); tok != nil {
			return tok.ExpiresAt.Sub(tok.IssuedAt)
		}
	}
	return assumedLifetime
}

// dropLocked stops keeping e, an extra scope set: it leaves its tenant's
// entries and the queue, and its counters go to the tenant's. A caller
// that still holds it may serve its token but looks the set up again
// before starting an acquisition (waitFresh). mu is held, and e has no
// flight in progress.
func (b *Broker) dropLocked(e *entry) {
	t := e.t
	b.unqueueLocked(&e.task)
	e.dropped, e.parked = true, false
	e.notifyLocked()
	t.droppedHits += e.hits.Load()
	t.droppedMisses += e.misses.Load()
	t.droppedIdPRequests += e.idpRequests.Load()
	next := maps.Clone(*t.entries.Load())
	delete(next, strings.Join(e.scopes, " "))
	t.entries.Store(&next)
}

// errTenantRemoved is the error of a call about tenant t that a reload
// removed (or replaced) while the call was in progress.
func errTenantRemoved(t *tenant) *Error {
	return &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf(
		"tenant %s was removed or replaced by a reload of brokerd's configuration while this call was in progress; ask again", t.name)}
}
