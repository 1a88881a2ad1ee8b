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

// credential returns generation gen of the app's secret, reading it from
// the keystore when the broker has none yet. Callers share one read in
// flight per app; while a failed read waits for its retry time, they get
// its error without a new read.
func (b *Broker) credential(a *app, gen uint64) (keystore.Secret, *Error) {
	for {
		b.mu.Lock()
		if a.gen != gen {
			b.mu.Unlock()
			return keystore.Secret{}, &Error{Kind: KindUnavailable, Transient: true, cause: errStale,
				Msg: fmt.Sprintf("the credential of app %s changed during the request", a.name)}
		}
		if !a.secret.IsZero() {
			s := a.secret
			b.mu.Unlock()
			return s, nil
		}
		if a.load == nil {
			if a.loadErr != nil && b.clock.Now().Before(a.retryAt) {
				err := a.loadErr
				b.mu.Unlock()
				return keystore.Secret{}, err
			}
			b.startLoadLocked(a)
		}
		ld := a.load
		b.mu.Unlock()
		select {
		case <-ld.done:
		case <-b.ctx.Done():
			return keystore.Secret{}, errClosing()
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

// loadCredential reads a's credential from the keystore, outside every
// lock and within the keystore timeout, and takes in the answer:
//   - the first secret the app gets lets the tenants waiting for it go
//     ahead;
//   - a secret read after failed reads, or one other than the secret in
//     use, starts a new credential generation: failures recorded under the
//     old one no longer apply, and every tenant of the app is fetched again
//     (paced);
//   - a failed read, while the app has no secret, is retried with backoff
//     (the tenants wait for it); with a secret in use, brokerd keeps using
//     it;
//   - within the window after a write whose answer was lost, the store is
//     read again, with backoff, whatever the answer.
func (b *Broker) loadCredential(a *app, ld *load, gen uint64) {
	ctx, cancel := context.WithTimeout(b.ctx, b.keystoreTimeout)
	s, err := b.store.Get(ctx, a.clientID)
	cancel()
	if n := len(s.Reveal()); err == nil && (n == 0 || n > keystore.MaxSecretSize) {
		// A store may hold what brokerd would never have stored (an empty
		// keyring item); reading it again would find the same.
		s, err = keystore.Secret{}, fmt.Errorf("%w: the stored secret is %d bytes (1 to %d)", keystore.ErrInvalidSecret, n, keystore.MaxSecretSize)
	}
	var kerr *Error
	if err != nil {
		kerr = b.keystoreReadError(a, err)
	}
	now := b.clock.Now()
	level, msg := slog.LevelDebug, ""
	args := []any{"app", a.name, "keystore", b.store.Name()}

	b.mu.Lock()
	a.load = nil
	rereading := !a.rereadUntil.IsZero() && now.Before(a.rereadUntil)
	if !rereading {
		a.rereadUntil, a.rereads = time.Time{}, 0
	}
	switch {
	case b.closed || a.gen != gen:
		// Close or a credential change overtook the read: its answer is
		// about a secret nobody uses any more.
	case err == nil && a.secret.IsZero() && a.loadErr == nil:
		a.secret = s
		level, msg = slog.LevelInfo, "credential read from the keystore"
		args = append(args, "tenants_resumed", b.wakeParkedLocked(a, now))
	case err == nil && (a.secret.IsZero() || s.Reveal() != a.secret.Reveal()):
		level, msg = slog.LevelInfo, "credential read from the keystore"
		if !a.secret.IsZero() {
			msg = "the keystore holds another credential than the one in use; using it"
		}
		a.secret, a.loadErr, a.loadFailures, a.credWarned = s, nil, 0, false
		a.gen++
		args = append(args, "tenants_resumed", b.reacquireLocked(a, now))
	case err == nil:
		msg = "the keystore holds the credential in use"
	case a.secret.IsZero():
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
		level, msg = slog.LevelWarn, "reading the credential again failed; brokerd keeps using the one it has"
		args = append(args, "error", kerr.Msg)
	}
	if rereading && !a.secret.IsZero() {
		a.rereads++
		b.scheduleLocked(&a.task, now.Add(retryAfter(a.rereads, true, 0, rand.Float64())))
	}
	close(ld.done)
	b.mu.Unlock()
	if msg != "" {
		b.log.Log(context.Background(), level, msg, args...)
	}
}

// wakeParkedLocked makes every entry of a that waits for its credential
// due now, and returns how many there were. mu is held.
func (b *Broker) wakeParkedLocked(a *app, now time.Time) int {
	n := 0
	for _, t := range a.tenants {
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
	for _, t := range a.tenants {
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
	for _, t := range a.tenants {
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

// SetCredential verifies a new client secret for the named app against one
// of its tenants, stores it in the keystore, and re-acquires every tenant of
// the app with it. A secret Entra ID rejects replaces nothing, and nothing is
// sent to Entra ID for a keystore that cannot store it. It returns the name
// of the tenant that verified the secret, or "" when none of the app's
// tenants could (none consented yet).
//
// When the keystore does not answer the write in time, the outcome is
// unknown: SetCredential returns KindOutcomeUnknown and keeps using the
// secret it had, and the broker reads the keystore again, with backoff,
// for rereadWindow, switching to whatever secret the keystore holds.
func (b *Broker) SetCredential(ctx context.Context, appName string, secret keystore.Secret) (string, error) {
	a := b.apps[appName]
	if a == nil {
		return "", errorf(KindNotFound, "app %q is not configured; configured apps: %s", appName, strings.Join(sortedKeys(b.apps), ", "))
	}
	if secret.IsZero() {
		return "", errorf(KindInvalidArgument, "the client secret is empty")
	}
	if n := len(secret.Reveal()); n > keystore.MaxSecretSize {
		return "", errorf(KindInvalidArgument, "a client secret of %d bytes is too long (at most %d; Entra ID secrets are about 40 characters)", n, keystore.MaxSecretSize)
	}
	if err := b.store.Writable(a.clientID); err != nil {
		return "", errorf(KindFailedPrecondition, "brokerd cannot store credentials in the %s keystore: %v", b.store.Name(), err)
	}
	if err := b.enter(); err != nil {
		return "", err
	}
	defer b.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(b.ctx, cancel)()

	select {
	case a.setting <- struct{}{}:
		defer func() { <-a.setting }()
	case <-ctx.Done():
		if b.ctx.Err() != nil {
			return "", errClosing()
		}
		return "", ctxError(ctx, "waiting for another credential change of app "+a.name)
	}
	verified, err := b.verify(ctx, a, secret)
	if err != nil {
		if b.ctx.Err() != nil {
			return "", errClosing()
		}
		return "", err
	}
	sctx, scancel := context.WithTimeout(ctx, b.keystoreTimeout)
	err = b.store.Set(sctx, a.clientID, secret)
	scancel()
	now := b.clock.Now()
	if err != nil {
		if b.ctx.Err() != nil {
			// Closing: the write may still land; the next start reads it.
			return "", errorf(KindUnavailable, "brokerd is shutting down: the new credential of app %s may or may not be stored; "+
				"check with `brokerctl tenants` once brokerd is back", a.name)
		}
		return "", b.keystoreWriteError(a, err, now)
	}
	b.mu.Lock()
	// A window of re-reads after an earlier lost write stays open: that
	// write can still land, and then the store holds it.
	a.secret, a.loadErr, a.loadFailures, a.credWarned = secret, nil, 0, false
	a.gen++
	if a.rereadUntil.IsZero() {
		b.unqueueLocked(&a.task) // no read of the store is needed now
	}
	b.reacquireLocked(a, now)
	b.mu.Unlock()
	b.log.Info("credential stored", "app", a.name, "keystore", b.store.Name(), "verified_with", verified)
	return verified, nil
}

// keystoreWriteError classifies a failed write of a's credential. A write
// whose answer was lost (timeout, cancellation) may still take effect: the
// broker reads the store again to find out.
func (b *Broker) keystoreWriteError(a *app, err error, now time.Time) *Error {
	store := b.store.Name()
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		b.mu.Lock()
		a.rereadUntil, a.rereads = now.Add(rereadWindow), 0
		b.scheduleLocked(&a.task, now)
		b.mu.Unlock()
		b.log.Warn("the keystore did not answer a credential write in time; reading it again", "app", a.name, "keystore", store)
		return &Error{Kind: KindOutcomeUnknown, Msg: fmt.Sprintf(
			"the %s keystore did not answer in time: the new credential of app %s may or may not be stored. "+
				"brokerd reads the keystore again and uses whatever it holds; check with `brokerctl tenants` in a minute, "+
				"and set the credential again if app %s's tenants fail", store, a.name, a.name)}
	case errors.Is(err, keystore.ErrUnavailable):
		return &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf(
			"the new credential of app %s was not stored: %v", a.name, err)}
	case errors.Is(err, keystore.ErrInvalidSecret):
		return &Error{Kind: KindInvalidArgument, Msg: fmt.Sprintf("the new credential of app %s was not stored: %v", a.name, err)}
	}
	return &Error{Kind: KindFailedPrecondition, Msg: fmt.Sprintf("the new credential of app %s was not stored: %v", a.name, err)}
}

// verify asks Entra ID for a token with the new secret in up to
// verifyTenants of the app's tenants. A rejected secret or an unreachable
// Entra ID is an error; tenants that cannot vouch (not consented, deleted)
// are skipped.
func (b *Broker) verify(ctx context.Context, a *app, secret keystore.Secret) (string, error) {
	for _, t := range a.tenants[:min(len(a.tenants), verifyTenants)] {
		c, err := b.newClient(t, secret)
		if err != nil {
			return "", err
		}
		_, rerr := b.askIdP(ctx, c, a.scopes)
		if rerr == nil {
			return t.name, nil
		}
		if ctx.Err() != nil {
			return "", ctxError(ctx, "verifying the new credential of app "+a.name+"; it was not stored")
		}
		e := classifyIdPError(rerr, b.idpContext(t))
		if e.TenantOnly {
			b.log.Info("tenant cannot verify the new credential", "app", a.name, "tenant", t.name, "aadsts", e.AADSTS)
			continue
		}
		kind := e.Kind
		if e.Transient {
			kind = KindUnavailable
		}
		return "", &Error{Kind: kind, AADSTS: e.AADSTS, Msg: fmt.Sprintf("the new credential for app %s was not stored: verifying it with tenant %s failed: %s", a.name, t.name, e.Msg)}
	}
	return "", nil
}

// ctxError reports a call that ended because its context did, saying what
// it was doing.
func ctxError(ctx context.Context, doing string) *Error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errorf(KindDeadlineExceeded, "deadline exceeded %s", doing)
	}
	return errorf(KindCanceled, "canceled %s", doing)
}
