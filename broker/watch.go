package broker

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// WatchToken follows the token of req's tenant and scope set, calling send
// from the caller's goroutine, one call at a time:
//
//   - first with the current token, as GetToken would return it (waiting
//     for an acquisition if need be), or with its error;
//   - then, if the last acquisition failed (the tenant is degraded), with
//     its error;
//   - then with each new token as soon as the broker holds it;
//   - and with the error of each failed acquisition (the tenant degrades
//     or fails); the watch goes on and sends the next token when there
//     is one.
//
// Exactly one of send's arguments is non-nil. MinValid applies to the
// first token only: later ones are the broker's fresh tokens. A watched
// extra scope set counts as used, so it is kept while it is watched.
//
// After a reload the request is looked up again in the new configuration:
// a tenant replaced with the same id (its app changed) is followed; a
// name that now names another directory (another id) ends the watch
// (KindUnavailable: watch again), and so does a request the new
// configuration refuses (the tenant removed, the caller no longer on its
// allow list, the scope no longer allowed), with that refusal.
//
// WatchToken returns when ctx is done (ctx's error), when send fails
// (send's error), when the broker closes (KindUnavailable), at once
// with the error of a request GetToken would refuse, or with the error of
// a request a reload made refused. It starts no goroutine and holds no
// lock while it waits or sends.
func (b *Broker) WatchToken(ctx context.Context, req TokenRequest, send func(*Token, *Error) error) error {
	w := b.world()
	e, minValid, err := b.lookupEntry(w, req)
	if err != nil {
		return err
	}
	id := e.t.id // the directory whose tokens this watch sends
	if e != e.t.def {
		e.lastUse.Store(b.clock.Now().UnixNano())
	}
	var sent *Token       // the last token sent
	var reported *failure // the last failure sent, nil after a token
	// The first event: what GetToken would answer.
	var r refusal
	tok, gerr := b.getFrom(ctx, e, minValid, &r)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := b.stillAllowed(w, e.t, req); err != nil {
		return err // a reload narrowed the allow list during the wait
	}
	var berr *Error
	switch {
	case gerr == nil:
		sent = tok
		err = send(tok, nil)
	case errors.As(gerr, &berr) && !b.closing():
		// Neither the token GetToken refused (expired, or short of
		// min_valid) nor the failure it answered with is sent after
		// this error; a token or failure that lands after the answer
		// is.
		sent, reported = r.tok, r.fl
		err = send(nil, berr)
	default:
		return gerr
	}
	if err != nil {
		return err
	}

	again := req
	again.MinValid = 0 // min_valid applies to the first token only
	for {
		if now := b.world(); now != w {
			w = now
			if e, _, err = b.lookupEntry(w, again); err != nil {
				if b.world() != w {
					continue // another reload overtook this one
				}
				return err
			}
			if e.t.id != id {
				// A consumer keyed by the name must not be fed another
				// customer's tokens without a break.
				return &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf(
					"%+q names another tenant (id %s, was %s) since a reload of brokerd's configuration; watch again", req.Tenant, e.t.id, id)}
			}
		}
		b.mu.Lock()
		if b.world() != w {
			// A reload published since: Reload does that under mu, so
			// whatever is read below is of the world this watch looked
			// its request up in.
			b.mu.Unlock()
			continue
		}
		if e.dropped {
			// Dropped as unused before this watch marked it used: keep
			// the set again.
			var aerr *Error
			if e, aerr = b.entryLocked(e.t, e.scopes); aerr != nil {
				b.mu.Unlock()
				return aerr
			}
		}
		if e.tok.Load() == nil && e.flight == nil && e.task.index < 0 && !e.parked && !b.closed {
			// Nothing will bring it a token by itself: an extra scope
			// set kept again, or one a reload made anew (of a replaced
			// tenant). Acquire it as a caller's waitFresh would.
			b.startFlightLocked(e, false)
		}
		tok, fl := e.tok.Load(), e.currentFailure()
		changed := e.changedLocked()
		b.mu.Unlock()

		if tok != nil && tok != sent || fl != nil && fl != reported {
			if err := b.stillAllowed(w, e.t, req); err != nil {
				return err // a reload since mu was let go
			}
		}
		switch {
		case tok != nil && tok != sent && tok.ExpiresAt.After(b.clock.Now()):
			sent, reported = tok, nil
			err = send(tok, nil)
		case fl != nil && fl != reported:
			reported = fl
			err = send(nil, fl.withRetry())
		default:
			err = nil
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-b.ctx.Done():
				return errClosing()
			case <-changed:
			}
			if e != e.t.def {
				e.lastUse.Store(b.clock.Now().UnixNano())
			}
		}
		if err != nil {
			return err
		}
	}
}

// getFrom is GetToken's answer from entry e; an error answer records in r
// what it refused.
func (b *Broker) getFrom(ctx context.Context, e *entry, minValid time.Duration, r *refusal) (*Token, error) {
	now := b.clock.Now()
	tok := e.tok.Load()
	if tok != nil && tok.ExpiresAt.Sub(now) >= minValid {
		e.hits.Add(1)
		return tok, nil
	}
	e.misses.Add(1)
	return b.waitFresh(ctx, e, minValid, r)
}

// closing reports whether Close was called.
func (b *Broker) closing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// changedLocked returns a channel that is closed at e's next change: a new
// token, a new failure, or its drop. mu is held.
func (e *entry) changedLocked() <-chan struct{} {
	if e.changed == nil {
		e.changed = make(chan struct{})
	}
	return e.changed
}

// notifyLocked tells e's watchers that it changed. mu is held.
func (e *entry) notifyLocked() {
	if e.changed != nil {
		close(e.changed)
		e.changed = nil
	}
}
