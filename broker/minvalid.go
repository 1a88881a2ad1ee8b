package broker

import (
	"fmt"
	"time"
)

// A caller's min_valid must not make the broker ask Entra ID at the
// caller's pace. It may be at most half a token's lifetime, so a token
// the caller's min_valid sends back to Entra ID lasts that caller at least
// as long again; and a token younger than limits.reacquire_interval is not
// replaced for a min_valid it cannot meet, whatever the lifetime.

// checkMinValid refuses a caller's min_valid longer than half the lifetime
// of the tenant's tokens: of e's last token, else of the app scopes' last
// token (e may be nil: a scope set not kept yet). With no token yet the
// lifetime is unknown and anything within range passes. It takes no lock.
func checkMinValid(t *tenant, e *entry, minValid time.Duration) *Error {
	tok := t.def.tok.Load()
	if e != nil {
		if own := e.tok.Load(); own != nil {
			tok = own
		}
	}
	if tok == nil {
		return nil
	}
	// Entra ID issues whole seconds (expires_in); what is left of them on
	// arrival is a little less.
	lifetime := tok.ExpiresAt.Sub(tok.IssuedAt).Round(time.Second)
	if most := lifetime / 2; minValid > most {
		return errorf(KindInvalidArgument, "min_valid %s is more than half of tenant %s's token lifetime (%s); ask for at most %s",
			minValid, t.name, lifetime, most)
	}
	return nil
}

// reacquireLimitLocked refuses to replace e's token for a caller's
// minValid while the token still serves the configured min_valid and is
// younger than limits.reacquire_interval: such a caller gets UNAVAILABLE
// with the time it may try again, and Entra ID is not asked. (Serving it
// the current token instead would break the promise of min_valid.) mu is
// held.
func (b *Broker) reacquireLimitLocked(e *entry, now time.Time, minValid time.Duration) *Error {
	tok := e.tok.Load()
	if tok == nil || tok.ExpiresAt.Sub(now) < b.world().cfg.minValid {
		return nil // due anyway: not the caller's min_valid's doing
	}
	interval := b.world().cfg.limits.ReacquireInterval
	if age := now.Sub(tok.IssuedAt); age >= interval {
		return nil
	}
	return &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf(
		"tenant %s's token has %s left, less than the min_valid %s asked for, and is younger than limits.reacquire_interval (%s), "+
			"so brokerd does not ask Entra ID for another yet; retry at %s",
		e.t.name, tok.ExpiresAt.Sub(now).Round(time.Second), minValid, interval, ceilSecond(tok.IssuedAt.Add(interval)).Format(time.RFC3339))}
}

// ceilSecond is t rounded up to a whole second, for a time shown in
// seconds that must not be too early.
func ceilSecond(t time.Time) time.Time { return t.Add(time.Second - 1).Truncate(time.Second) }
