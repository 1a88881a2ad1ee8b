package broker

import (
	"container/heap"
	"fmt"
	"time"
)

// maxSleep bounds how long the run loop sleeps without looking at the
// clock again. Timers run on the monotonic clock, which stops while the
// host is suspended; token lifetimes are wall time. Waking at least this
// often finds refreshes that fell due during a suspend.
const maxSleep = time.Minute

// task is a moment something is due: an entry's next acquisition or an
// app's next keystore read. Exactly one of entry and app is set.
type task struct {
	due   time.Time
	seq   uint64 // tasks due at the same moment run in the order they were scheduled
	index int    // in Broker.queue; -1 when not queued
	entry *entry
	app   *app
}

// taskQueue is a min-heap of tasks by due time (container/heap).
type taskQueue []*task

func (q taskQueue) Len() int { return len(q) }
func (q taskQueue) Less(i, j int) bool {
	if !q[i].due.Equal(q[j].due) {
		return q[i].due.Before(q[j].due)
	}
	return q[i].seq < q[j].seq
}
func (q taskQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *taskQueue) Push(x any) {
	t := x.(*task)
	t.index = len(*q)
	*q = append(*q, t)
}
func (q *taskQueue) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	t.index = -1
	return t
}

// scheduleLocked makes t due at `at`, replacing any earlier schedule, and
// starts the run loop if it is not running. Nothing is scheduled once the
// broker is closed, nor for an entry no longer kept or an app a reload
// removed. mu is held.
func (b *Broker) scheduleLocked(t *task, at time.Time) {
	if b.closed || t.entry != nil && t.entry.dropped || t.app != nil && t.app.removed {
		return
	}
	b.seq++
	t.due, t.seq = at, b.seq
	if t.index >= 0 {
		heap.Fix(&b.queue, t.index)
	} else {
		heap.Push(&b.queue, t)
	}
	if !b.running {
		b.running = true
		b.wg.Add(1)
		go b.run()
	}
	b.kickLocked()
}

// unqueueLocked takes t out of the queue. mu is held.
func (b *Broker) unqueueLocked(t *task) {
	if t.index >= 0 {
		heap.Remove(&b.queue, t.index)
	}
	t.due = time.Time{}
}

// kickLocked makes the run loop look at the queue again. mu is held.
func (b *Broker) kickLocked() {
	b.kicked = true
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// run is the scheduler: it starts what the queue says is due and sleeps
// until the next moment something is, or until a kick.
func (b *Broker) run() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		select {
		case <-b.kick:
		default:
		}
		b.kicked, b.sleeping = false, false
		if b.closed {
			b.mu.Unlock()
			return
		}
		now := b.clock.Now()
		wake := now.Add(maxSleep)
		next, dropped := b.dispatchLocked(now)
		if !next.IsZero() && next.Before(wake) {
			wake = next
		}
		b.sleeping, b.sleepUntil = true, wake
		b.mu.Unlock()
		for _, e := range dropped {
			b.log.Debug("unused scope set dropped", "tenant", e.t.name, "scopes", e.scopes,
				"unused_for", fmt.Sprintf("%d token lifetimes", unusedLifetimes))
		}

		fired, stop := b.clock.TimerAt(wake)
		select {
		case <-fired:
		case <-b.kick:
		case <-b.ctx.Done():
		}
		stop()
	}
}

// dispatchLocked starts every task that is due now, as far as pacing and
// prefetch_concurrency allow, and returns when the queue next needs the
// run loop: the next task's due time or the next pacing slot; zero when
// only a landing flight (a kick) can let more start. An extra scope set
// that fell due unused is dropped instead (and returned, to be logged
// without mu). mu is held.
func (b *Broker) dispatchLocked(now time.Time) (next time.Time, dropped []*entry) {
	for b.queue.Len() > 0 {
		t := b.queue[0]
		if t.due.After(now) {
			return t.due, dropped
		}
		if a := t.app; a != nil {
			b.unqueueLocked(t)
			if a.load == nil && (a.cred == nil || !a.rereadUntil.IsZero()) {
				b.startLoadLocked(a)
			}
			continue
		}
		e := t.entry
		a := e.t.app
		if f := e.flight; f != nil && f.gen == a.gen {
			// A caller's acquisition is already on it; its landing
			// schedules the next one.
			b.unqueueLocked(t)
			continue
		}
		if e.flight == nil && e.unusedLocked(now) {
			b.dropLocked(e)
			dropped = append(dropped, e)
			continue
		}
		if a.cred == nil {
			// The app's credential is not in hand: the entry waits for the
			// keystore read (started here unless one is in flight or
			// waiting for its retry time) instead of holding a pacing or a
			// prefetch_concurrency slot while it waits.
			if a.load == nil && (a.loadErr == nil || !now.Before(a.retryAt)) {
				b.startLoadLocked(a)
			}
			b.parkLocked(e, nil)
			continue
		}
		if b.background >= b.world().cfg.prefetchConcurrency {
			return time.Time{}, dropped
		}
		if b.nextPace.After(now) {
			return b.nextPace, dropped
		}
		b.unqueueLocked(t)
		if now.Sub(b.nextPace) < b.pace {
			// On time, or a little late (the wake-up itself takes time):
			// the next slot keeps to the grid, so lateness does not add
			// up and the rate stays prefetch_rate.
			b.nextPace = b.nextPace.Add(b.pace)
		} else {
			// After a quiet spell: one now, the next a full slot later.
			b.nextPace = now.Add(b.pace)
		}
		b.background++
		b.startFlightLocked(e, true)
	}
	return time.Time{}, dropped
}
