// Package fakeclock is a clock that moves only when a test moves it. It
// satisfies broker.Clock, so the broker's refresh schedule, backoff and
// states can be tested in milliseconds instead of waiting out real token
// lifetimes.
package fakeclock

import (
	"sort"
	"sync"
	"time"
)

// Clock is a fake clock. The zero value is not usable; call New.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

type timer struct {
	deadline time.Time
	c        chan time.Time
}

// New returns a clock that reads start until it is moved.
func New(start time.Time) *Clock { return &Clock{now: start.Round(0)} }

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// TimerAt returns a channel that receives once the clock reaches deadline
// (at once if it already has), and a function that stops the timer; stop
// reports whether it stopped a timer that had not fired.
func (c *Clock) TimerAt(deadline time.Time) (<-chan time.Time, func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{deadline: deadline, c: make(chan time.Time, 1)}
	if !deadline.After(c.now) {
		t.c <- c.now
		return t.c, func() bool { return false }
	}
	c.timers = append(c.timers, t)
	return t.c, func() bool { return c.remove(t) }
}

func (c *Clock) remove(t *timer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves the clock forward by d and fires every timer whose
// deadline it reaches.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	now := c.now.Add(d)
	c.mu.Unlock()
	c.Set(now)
}

// Set moves the clock to t (forward or back) and fires every timer whose
// deadline is at or before t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t.Round(0)
	kept := c.timers[:0]
	for _, x := range c.timers {
		if x.deadline.After(c.now) {
			kept = append(kept, x)
			continue
		}
		x.c <- c.now
	}
	clear(c.timers[len(kept):])
	c.timers = kept
}

// Timers returns the deadlines of the timers that have not fired, earliest
// first.
func (c *Clock) Timers() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]time.Time, len(c.timers))
	for i, t := range c.timers {
		out[i] = t.deadline
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}
