package broker

import "time"

// Clock is the broker's time: the refresh schedule, backoff, min_valid and
// the tenants' states are all read from it, so tests can move time by hand
// (internal/fakeclock). Timeouts of single I/O calls (idp_timeout, the
// keystore timeout) are real time whatever the Clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// TimerAt returns a channel that receives once the clock reaches
	// deadline (at once if it already has), and a function that stops the
	// timer. The deadline is absolute, so a wait computed from an earlier
	// Now cannot miss a moment the clock has already passed.
	TimerAt(deadline time.Time) (<-chan time.Time, func() bool)
}

// wallClock is the real Clock. Its times carry no monotonic reading: a
// token's expiry is wall time, and a host that was suspended must find
// its refreshes due when it wakes (the monotonic clock stops during
// suspend; the broker's scheduler also wakes at least every maxSleep).
type wallClock struct{}

func (wallClock) Now() time.Time { return time.Now().Round(0) }

func (wallClock) TimerAt(deadline time.Time) (<-chan time.Time, func() bool) {
	t := time.NewTimer(time.Until(deadline))
	return t.C, t.Stop
}

// Clock is the broker's time, for adapters whose own time-based limits
// (such as the audit log's per-minute windows) must move with it.
func (b *Broker) Clock() Clock { return b.clock }
