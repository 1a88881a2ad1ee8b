package broker

import (
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
