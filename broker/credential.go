package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// verifyTenants bounds how many of an app's tenants SetCredential tries
// when the first ones cannot vouch for a secret (consent missing etc.).
const verifyTenants = 5

// rereadWindow is how long after a lost keystore answer to a write the
// broker keeps reading the store again, with backoff, to find out whether
// the write took effect: an abandoned keyring call can complete long after
// its caller gave up (a user answering an unlock prompt).
const rereadWindow = 30 * time.Minute

// load is one keystore read of an app's credential.
type load struct {
	done chan struct{}
}

// credential returns generation gen of the app's credential, reading it
// from the keystore when the broker has none yet. Callers share one read
// in flight per app; while a failed read waits for its retry time, they
// get its error without a new read. ctx is the flight's tenant's: once it
// ends (the tenant removed, the broker closed) nothing is read for it.
func (b *Broker) credential(ctx context.Context, a *app, gen uint64) (*held, *Error) {
	for {
		if ctx.Err() != nil {
			return nil, errClosing() // a removed tenant's flight lands as stale whatever its error
		}
		b.mu.Lock()
		if a.gen != gen {
			b.mu.Unlock()
			return nil, &Error{Kind: KindUnavailable, Transient: true, cause: errStale,
				Msg: fmt.Sprintf("the credential of app %s changed during the request", a.name)}
		}
		if h := a.cred; h != nil {
			b.mu.Unlock()
			return h, nil
		}
		if a.load == nil {
			if a.loadErr != nil && b.clock.Now().Before(a.retryAt) {
				err := a.loadErr
				b.mu.Unlock()
				return nil, err
			}
			b.startLoadLocked(a)
		}
		ld := a.load
		b.mu.Unlock()
		select {
		case <-ld.done:
		case <-ctx.Done():
		}
	}
}

// startLoadLocked starts a keystore read of a's credential. mu is held.
func (b *Broker) startLoadLocked(a *app) {
	ld := &load{done: make(chan struct{})}
	a.load = ld
	b.unqueueLocked(&a.task)
	gen := a.gen
	b.goLocked(func() { b.loadCredential(a, ld, gen) })
}

// readCredential reads and parses a's credential from the keystore,
// within the keystore timeout.
func (b *Broker) readCredential(a *app) (*held, error) {
	ctx, cancel := context.WithTimeout(b.ctx, b.keystoreTimeout)
	v, err := b.store.Get(ctx, a.clientID)
	cancel()
	b.observeStore("get", err)
	if err != nil {
		return nil, err
	}
	c, err := keystore.Decode(v)
	if err != nil {
		return nil, err
	}
	return b.newHeld(a, c)
}

// loadCredential reads a's credential from the keystore, outside every
// lock and within the keystore timeout, and takes in the answer:
//   - the first credential the app gets lets the tenants waiting for it go
//     ahead;
//   - a credential read after failed reads, or one other than the
//     credential in use, starts a new credential generation: failures
//     recorded under the old one no longer apply, and every tenant of the
//     app is fetched again (paced);
//   - a failed read, while the app has no credential, is retried with
//     backoff (the tenants wait for it); with a credential in use, brokerd
//     keeps using it;
//   - within the window after a write whose answer was lost, the store is
//     read again, with backoff, whatever the answer.
func (b *Broker) loadCredential(a *app, ld *load, gen uint64) {
	h, err := b.readCredential(a)
	var kerr *Error
	if err != nil {
		kerr = b.keystoreReadError(a, err)
	}
	now := b.clock.Now()
	level, msg := slog.LevelDebug, ""
	args := []any{"app", a.name, "keystore", b.store.Name()}

	b.mu.Lock()
	a.load = nil
	if !b.closed && a.gen == gen {
		a.storeErr = ""
		if kerr != nil {
			a.storeErr = kerr.Msg
		}
	}
	rereading := !a.rereadUntil.IsZero() && now.Before(a.rereadUntil)
	if !rereading {
		a.rereadUntil, a.rereads = time.Time{}, 0
	}
	switch {
	case b.closed || a.gen != gen:
		// Close or a credential change overtook the read: its answer is
		// about a credential nobody uses any more.
	case err == nil && a.cred == nil && a.loadErr == nil:
		a.cred = h
		level, msg = slog.LevelInfo, "credential read from the keystore"
		args = append(args, "kind", h.info.Kind, "tenants_resumed", b.wakeParkedLocked(a, now))
	case err == nil && !h.same(a.cred):
		level, msg = slog.LevelInfo, "credential read from the keystore"
		if a.cred != nil {
			msg = "the keystore holds another credential than the one in use; using it"
		}
		a.cred, a.loadErr, a.loadFailures, a.credWarned, a.expiryWarnedAt = h, nil, 0, false, time.Time{}
		a.gen++
		args = append(args, "kind", h.info.Kind, "tenants_resumed", b.reacquireLocked(a, now))
	case err == nil:
		// The same value; what is said of it (set_at, expires_at) may be
		// new. The generation, and the MSAL clients built for it, stay.
		a.cred = h
		msg = "the keystore holds the credential in use"
	case a.cred == nil:
		a.loadFailures++
		wait := retryAfter(a.loadFailures, kerr.Transient, 0, rand.Float64())
		if rereading {
			a.rereads++
			wait = min(wait, retryAfter(a.rereads, true, 0, rand.Float64()))
		}
		a.loadErr, a.retryAt = kerr, now.Add(wait)
		b.scheduleLocked(&a.task, a.retryAt)
		b.refreshParkedLocked(a)
		msg, args = "reading the credential failed", append(args, "retry_at", a.retryAt, "error", kerr.Msg)
		if !a.credWarned {
			// Said once per app until the credential can be read.
			level, a.credWarned = slog.LevelWarn, true
		}
	default:
		msg = "reading the credential again failed; brokerd keeps using the one it has"
		args = append(args, "error", kerr.Msg)
		if kerr.Msg != a.lastReadWarn {
			// Said once per distinct reason: a file another user keeps
			// changing must not flood the log.
			level, a.lastReadWarn = slog.LevelWarn, kerr.Msg
		}
	}
	if err == nil {
		a.lastReadWarn = ""
	}
	if rereading && a.cred != nil {
		a.rereads++
		b.scheduleLocked(&a.task, now.Add(retryAfter(a.rereads, true, 0, rand.Float64())))
	}
	expiry := b.expiryWarningLocked(a, now)
	if a.changedAgain && !b.closed && !a.removed {
		// The keystore reported a change while this read was in flight:
		// it may have read the value before the change.
		a.changedAgain = false
		b.startLoadLocked(a)
	}
	close(ld.done)
	b.mu.Unlock()
	if msg != "" {
		b.log.Log(context.Background(), level, msg, args...)
	}
	if expiry != "" {
		b.log.Warn("credential expires soon", "app", a.name, "remedy", expiry)
	}
}

// wakeParkedLocked makes every entry of a that waits for its credential
// due now, and returns how many there were. mu is held.
func (b *Broker) wakeParkedLocked(a *app, now time.Time) int {
	n := 0
	for _, t := range b.tenantsOf(a) {
		for _, e := range *t.entries.Load() {
			if e.parked {
				e.parked = false
				b.scheduleLocked(&e.task, now)
				n++
			}
		}
	}
	return n
}

// refreshParkedLocked gives every entry of a that waits for its
// credential the app's latest error and retry time. mu is held.
func (b *Broker) refreshParkedLocked(a *app) {
	for _, t := range b.tenantsOf(a) {
		for _, e := range *t.entries.Load() {
			if e.parked {
				e.failure = &failure{err: a.loadErr, retryAt: a.retryAt, gen: a.gen}
				e.notifyLocked()
			}
		}
	}
}

// reacquireLocked makes every entry of a due now, after its credential
// changed, and returns how many there are. Flights still in the air with
// the old credential land as stale; the backoff of failures with the old
// credential does not carry over. mu is held.
func (b *Broker) reacquireLocked(a *app, now time.Time) int {
	n := 0
	for _, t := range b.tenantsOf(a) {
		for _, e := range *t.entries.Load() {
			e.parked, e.failures = false, 0
			b.scheduleLocked(&e.task, now)
			n++
		}
	}
	return n
}

// keystoreReadError classifies a failed read of a's credential. Only a
// store that cannot be reached or did not answer in time is UNAVAILABLE
// (and retried with backoff); anything else needs a person.
func (b *Broker) keystoreReadError(a *app, err error) *Error {
	store := b.store.Name()
	readOnly := b.store.Writable(a.clientID) != nil
	fix := "store one with: brokerctl credential set --app " + a.name
	if readOnly {
		fix = "provision it and restart brokerd"
		if b.watching.Load() {
			fix = "fix the file; brokerd reads it again when it changes"
		}
	}
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		if readOnly {
			// The read-only store's error says how to provision it.
			fix = err.Error()
		}
		return &Error{Kind: KindFailedPrecondition, credential: true, cause: errNoCredential, Msg: fmt.Sprintf(
			"no credential stored for app %s (client id %s) in the %s keystore; %s", a.name, a.clientID, store, fix)}
	case errors.Is(err, keystore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &Error{Kind: KindUnavailable, Transient: true, credential: true, Msg: fmt.Sprintf(
			"cannot read the credential of app %s: %v", a.name, err)}
	case errors.Is(err, context.Canceled):
		return errClosing()
	}
	return &Error{Kind: KindFailedPrecondition, credential: true, Msg: fmt.Sprintf(
		"the credential of app %s in the %s keystore is unusable: %v; %s", a.name, store, err, fix)}
}

// ctxError reports a call that ended because its context did, saying what
// it was doing.
func ctxError(ctx context.Context, doing string) *Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errorf(KindDeadlineExceeded, "deadline exceeded %s", doing)
	}
	return errorf(KindCanceled, "canceled %s", doing)
}

// watchStore follows the keystore's changes, when it reports them, for
// as long as the broker runs: an app whose credential changed is read
// again at once, and a new credential starts a new generation (see
// loadCredential).
func (b *Broker) watchStore() {
	w, ok := b.store.(keystore.Watcher)
	if !ok {
		return
	}
	b.wg.Add(1)
	b.watching.Store(true)
	go func() {
		defer b.wg.Done()
		if err := w.Watch(b.ctx, b.credentialChanged); err != nil {
			b.watching.Store(false)
			b.log.Warn("cannot watch the keystore for changes; a credential replaced in it is read at the next restart",
				"keystore", b.store.Name(), "error", err)
		}
	}()
}

// credentialChanged reads again the credential of every app whose client
// id is account.
func (b *Broker) credentialChanged(account string) {
	var read []string
	b.mu.Lock()
	for _, a := range b.world().apps {
		switch {
		case b.closed || a.clientID != strings.ToLower(account) || a.assertionFile != "":
		case a.load != nil:
			a.changedAgain = true // read again when this read lands
		default:
			b.startLoadLocked(a)
			read = append(read, a.name)
		}
	}
	b.mu.Unlock()
	for _, name := range read {
		b.log.Debug("the keystore reports a change; reading the credential again", "app", name, "keystore", b.store.Name())
	}
}
