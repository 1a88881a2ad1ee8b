package broker

import (
	"context"
	"testing"
	"time"
)

// Settle waits until b is quiet: nothing in flight (no acquisition, no
// keystore read) and the run loop asleep until a moment b's clock has not
// reached. It returns that moment, or the zero time when the run loop has
// never been needed. Tests on a fake clock call it after moving the
// clock, so that what they then assert no longer depends on timing.
func Settle(t testing.TB, b *Broker) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		busy, kicked, running, sleeping, until, closed := b.busy, b.kicked, b.running, b.sleeping, b.sleepUntil, b.closed
		b.mu.Unlock()
		if closed {
			return time.Time{}
		}
		if busy == 0 && !kicked {
			if !running {
				return time.Time{}
			}
			if sleeping && until.After(b.clock.Now()) {
				return until
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker did not settle: %d in flight, kicked %v, run loop asleep %v until %v (clock %v)",
				busy, kicked, sleeping, until, b.clock.Now())
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// Watched reports whether a watch of tenant's default scope set waits for
// its next change.
func Watched(b *Broker, tenant string) bool {
	e := b.world().lookup[tenant].def
	b.mu.Lock()
	defer b.mu.Unlock()
	return e.changed != nil
}

// ScopeSets is how many scope sets tenant keeps, its app's included.
func ScopeSets(b *Broker, tenant string) int {
	return len(*b.world().lookup[tenant].entries.Load())
}

// DropScopeSet drops the kept entry of tenant's canonical scopes, as the
// run loop drops an unused one, after a caller found it: wait is that
// caller's wait for a token on the entry it holds, and flew reports
// whether an acquisition ever started on the dropped entry.
func DropScopeSet(t testing.TB, b *Broker, tenant string, scopes []string) (wait func(context.Context, time.Duration) (*Token, error), flew func() bool) {
	t.Helper()
	tn := b.world().lookup[tenant]
	e := tn.entry(scopes)
	if e == nil || e == tn.def {
		t.Fatalf("tenant %s keeps no extra scope set %v", tenant, scopes)
	}
	requests := e.idpRequests.Load()
	b.mu.Lock()
	if e.flight != nil {
		b.mu.Unlock()
		t.Fatalf("scope set %v is being acquired", scopes)
	}
	b.dropLocked(e)
	b.mu.Unlock()
	wait = func(ctx context.Context, minValid time.Duration) (*Token, error) {
		var r refusal
		return b.waitFresh(ctx, e, minValid, &r)
	}
	flew = func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return e.flight != nil || e.idpRequests.Load() != requests
	}
	return wait, flew
}
