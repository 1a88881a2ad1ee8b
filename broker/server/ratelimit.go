package server

import (
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
)

// maxLimitedUIDs bounds the uids a uidLimiter tracks at once. Only root can
// act as more uids than this within one window; past it, events are let
// through rather than tracked, so memory stays bounded either way.
const maxLimitedUIDs = 4096

// uidLimiter lets at most n events per uid through in each window (which
// starts at the uid's first event) and counts the rest. When a window that
// held back events ends, or the limiter is closed, report is called once
// with the count, so nothing held back goes unrecorded.
type uidLimiter struct {
	clock  broker.Clock
	n      int
	window time.Duration
	report func(uid uint32, held int)

	done chan struct{} // closed by close: report now
	wg   sync.WaitGroup

	mu     sync.Mutex
	uids   map[uint32]*uidWindow // guarded by mu
	closed bool                  // guarded by mu
}

// uidWindow is one uid's current window.
type uidWindow struct {
	end  time.Time
	n    int // events let through
	held int // events held back
}

func newUIDLimiter(clock broker.Clock, n int, window time.Duration, report func(uid uint32, held int)) *uidLimiter {
	return &uidLimiter{clock: clock, n: n, window: window, report: report,
		done: make(chan struct{}), uids: map[uint32]*uidWindow{}}
}

// allow reports whether an event of uid may be recorded one by one.
func (l *uidLimiter) allow(uid uint32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return true
	}
	// Read under mu: a window's report, which runs once the clock has
	// passed its end, then never misses an event counted in it.
	now := l.clock.Now()
	w := l.uids[uid]
	if w == nil || !now.Before(w.end) {
		if w == nil && len(l.uids) >= maxLimitedUIDs && !l.sweepLocked(now) {
			return true
		}
		// An ended window that held events back is reported by its own
		// goroutine, which has it.
		w = &uidWindow{end: now.Add(l.window)}
		l.uids[uid] = w
	}
	if w.n < l.n {
		w.n++
		return true
	}
	w.held++
	if w.held == 1 {
		l.wg.Add(1)
		go l.reportAtEnd(uid, w)
	}
	return false
}

// sweepLocked forgets ended windows that held nothing back, and reports
// whether there is room now. mu is held.
func (l *uidLimiter) sweepLocked(now time.Time) bool {
	for uid, w := range l.uids {
		if w.held == 0 && !now.Before(w.end) {
			delete(l.uids, uid)
		}
	}
	return len(l.uids) < maxLimitedUIDs
}

// reportAtEnd waits for the end of w (or close) and reports what w held
// back.
func (l *uidLimiter) reportAtEnd(uid uint32, w *uidWindow) {
	defer l.wg.Done()
	c, stop := l.clock.TimerAt(w.end)
	select {
	case <-c:
	case <-l.done:
		stop()
	}
	l.mu.Lock()
	held := w.held
	if l.uids[uid] == w {
		delete(l.uids, uid)
	}
	l.mu.Unlock()
	l.report(uid, held)
}

// close reports every window that holds events back, and lets every later
// event through. It returns once every report is written, also when
// another close is in progress.
func (l *uidLimiter) close() {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.done)
	}
	l.mu.Unlock()
	l.wg.Wait()
}
