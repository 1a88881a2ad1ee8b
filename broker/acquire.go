package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
)

// The token lifetimes the broker believes. Entra ID issues 60-90 minutes
// (10 minutes to 24 hours with a token lifetime policy); tests use seconds.
const (
	minLifetime = 5 * time.Second
	maxLifetime = 24 * time.Hour
)

// flight is one acquisition of an entry's token. Its result fields are
// written before done is closed and only read after.
type flight struct {
	gen        uint64    // the app's credential generation it acquires with
	background bool      // started by the scheduler (counts against prefetch_concurrency)
	started    time.Time // on the broker's clock
	done       chan struct{}

	tok   *Token
	err   *Error
	fail  *failure // the failure err was recorded as on the entry
	stale bool     // overtaken by a credential change: its result was not applied
}

// refusal is what waitFresh saw when it answered with an error: the
// entry's token it did not hand out and the failure it answered with. A
// watch whose first event is that error starts from it, so that neither
// is sent after the error and anything newer is.
type refusal struct {
	tok *Token
	fl  *failure
}

// errStale is the cause of a flight's error when the credential it was
// started with was replaced before it could use it.
var errStale = errors.New("the credential changed")

// startFlightLocked starts an acquisition of e with the app's current
// credential generation and makes it e's current flight. mu is held.
func (b *Broker) startFlightLocked(e *entry, background bool) *flight {
	f := &flight{gen: e.t.app.gen, background: background, started: b.clock.Now(), done: make(chan struct{})}
	e.flight = f
	e.parked = false
	b.unqueueLocked(&e.task)
	b.goLocked(func() {
		tok, err := b.acquire(e, f)
		b.land(e, f, tok, err)
	})
	return f
}

// waitFresh waits for an acquisition that yields a token with minValid
// left: the entry's current flight, or a new one. A caller inside the
// retry window of a recorded failure gets that failure at once, and one
// whose minValid alone would replace a young token is refused
// (reacquireLimitLocked). A dropped entry is looked up again, never flown.
// An error answer records in r what it refused.
func (b *Broker) waitFresh(ctx context.Context, e *entry, minValid time.Duration, r *refusal) (*Token, error) {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return nil, errClosing()
		}
		if e.dropped {
			// Dropped as unused since this caller found it: the set is
			// kept again (if there is room) and acquired afresh.
			var err *Error
			if e, err = b.entryLocked(e.t, e.scopes); err != nil {
				b.mu.Unlock()
				return nil, err
			}
		}
		now := b.clock.Now()
		tok := e.tok.Load()
		if tok != nil && tok.ExpiresAt.Sub(now) >= minValid {
			b.mu.Unlock()
			return tok, nil // landed while this caller looked
		}
		f := e.flight
		if f == nil || f.gen != e.t.app.gen {
			if fl := e.currentFailure(); fl != nil && now.Before(fl.retryAt) {
				*r = refusal{tok, fl}
				b.mu.Unlock()
				return nil, fl.withRetry()
			}
			if err := b.reacquireLimitLocked(e, now, minValid); err != nil {
				*r = refusal{tok, e.currentFailure()}
				b.mu.Unlock()
				return nil, err
			}
			f = b.startFlightLocked(e, false)
		}
		b.mu.Unlock()

		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, errorf(KindDeadlineExceeded, "deadline exceeded waiting for a token for tenant %s from Entra ID", e.t.name)
			}
			return nil, errorf(KindCanceled, "canceled while waiting for a token for tenant %s", e.t.name)
		case <-f.done:
		}
		switch {
		case f.stale:
			continue // the credential changed: wait for the flight that uses the new one
		case f.err != nil:
			*r = refusal{tok, f.fail} // a failed flight leaves the token as it was
			return nil, f.err
		}
		if left := f.tok.ExpiresAt.Sub(b.clock.Now()); left < minValid {
			*r = refusal{f.tok, nil}
			return nil, errMinValid(e, minValid, left)
		}
		return f.tok, nil
	}
}

func (f *failure) withRetry() *Error {
	e := *f.err
	e.Msg = fmt.Sprintf("%s (next attempt at %s)", e.Msg, f.retryAt.Format(time.RFC3339))
	return &e
}

// acquire gets a token for e with generation f.gen of the app's
// credential: the credential first (which may read the keystore), then an
// IdP slot, then the request.
func (b *Broker) acquire(e *entry, f *flight) (*Token, *Error) {
	h, err := b.credential(e.t.ctx, e.t.app, f.gen)
	if err != nil {
		return nil, err
	}
	client, err := b.client(e.t, h, f.gen)
	if err != nil {
		return nil, err
	}
	return b.requestToken(e, client)
}

// land applies a flight's result to its entry, if the flight is still the
// entry's and its credential is still the app's, and schedules what comes
// next: a refresh after a success, a retry after a failure, nothing while
// the entry waits for its app's credential.
func (b *Broker) land(e *entry, f *flight, tok *Token, err *Error) {
	now := b.clock.Now()
	a := e.t.app
	logLevel, logMsg := slog.LevelDebug, ""
	var logArgs []any

	b.mu.Lock()
	f.tok, f.err = tok, err
	if f.background {
		b.background--
		b.kickLocked()
	}
	switch {
	case e.dropped:
		// Its tenant was removed by a reload while it flew: callers
		// waiting on it look the tenant up again.
		f.stale, e.flight = true, nil
		logMsg = "result of an acquisition for a tenant no longer configured dropped"
		logArgs = []any{"tenant", e.t.name}
	case e.flight != f || f.gen != a.gen:
		f.stale = true
		if e.flight == f {
			e.flight = nil
			if e.task.index < 0 && !e.parked {
				// Nothing scheduled it after the credential changed (a
				// delete does not): it goes on with the app's credential,
				// or waits for one, as the run loop decides.
				b.scheduleLocked(&e.task, now)
			}
		}
		logMsg = "result of an acquisition with a replaced credential dropped"
		logArgs = []any{"tenant", e.t.name}
	case err != nil:
		e.flight = nil
		e.failures++
		if err.credential {
			// loadCredential logged it, once per app; thousands of
			// tenants need not repeat it.
			b.parkLocked(e, err)
		} else {
			at := now.Add(retryAfter(e.failures, err.Transient, err.RetryAfter, rand.Float64()))
			e.failure = &failure{err: err, retryAt: at, gen: f.gen}
			b.scheduleLocked(&e.task, at)
			logLevel = slog.LevelWarn
		}
		f.fail = e.failure
		logMsg = "token acquisition failed"
		logArgs = []any{"tenant", e.t.name, "scopes", e.scopes, "aadsts", err.AADSTS, "transient", err.Transient,
			"retry_at", e.failure.retryAt, "error", err.Msg}
	default:
		e.flight, e.failure, e.failures = nil, nil, 0
		e.tok.Store(tok)
		at := refreshAt(tok.IssuedAt, tok.ExpiresAt, tok.refreshOn, b.world().cfg.refreshBefore, rand.Float64())
		b.scheduleLocked(&e.task, at)
		logMsg = "token acquired"
		logArgs = []any{"tenant", e.t.name, "scopes", e.scopes, "expires_in", tok.ExpiresAt.Sub(now).Round(time.Second), "refresh_at", at}
	}
	if !f.stale {
		e.notifyLocked()
	}
	close(f.done)
	b.mu.Unlock()
	b.log.Log(context.Background(), logLevel, logMsg, logArgs...)
	if err == nil && !f.stale {
		// A credential about to expire is warned of again, once a day,
		// as long as tokens come from it.
		b.warnExpiry(a)
		if e == e.t.def {
			b.warnMissingRoles(e.t, tok)
		}
	}
}

// parkLocked makes e wait for its app's credential: for the keystore read
// in flight or the next one (loadCredential wakes it), rather than for a
// retry of its own. err, or else the app's last failed read, is recorded
// as e's failure. mu is held.
func (b *Broker) parkLocked(e *entry, err *Error) {
	a := e.t.app
	e.parked = true
	if err == nil {
		err = a.loadErr
	}
	if err != nil {
		e.failure = &failure{err: err, retryAt: a.retryAt, gen: a.gen}
		e.notifyLocked()
	}
	b.unqueueLocked(&e.task)
}

// client returns the tenant's MSAL client for generation gen of the app's
// credential, building it outside the lock when the credential changed.
func (b *Broker) client(t *tenant, h *held, gen uint64) (*confidential.Client, *Error) {
	b.mu.Lock()
	c, cgen := t.client, t.clientGen
	b.mu.Unlock()
	if c != nil && cgen == gen {
		return c, nil
	}
	c, err := b.newClient(t, h)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if t.client == nil || t.clientGen < gen {
		t.client, t.clientGen = c, gen
	}
	b.mu.Unlock()
	return c, nil
}

func (b *Broker) newClient(t *tenant, h *held) (*confidential.Client, *Error) {
	opts := []confidential.Option{confidential.WithCache(noCache{}), confidential.WithHTTPClient(b.http)}
	if h.cert != nil && t.app.sendX5C {
		opts = append(opts, confidential.WithX5C())
	}
	if !isMicrosoftLogin(t.app.authorityHost) {
		opts = append(opts, confidential.WithInstanceDiscovery(false))
	}
	c, err := confidential.New(t.app.authorityHost+"/"+t.id, t.app.clientID, h.msal, opts...)
	if err != nil {
		return nil, errorf(KindInternal, "building the MSAL client for tenant %s: %v", t.name, err)
	}
	return &c, nil
}

// askIdP makes one token request to Entra ID, holding one of the
// max_idp_requests slots for it; idp_timeout starts once it has one. ctx
// must end when the broker closes (both callers derive it from b.ctx), so
// no request starts after Close; a flight's ends when its tenant is
// removed, too.
func (b *Broker) askIdP(ctx context.Context, client *confidential.Client, scopes []string) (confidential.AuthResult, error) {
	select {
	case b.idpSlots <- struct{}{}:
		defer func() { <-b.idpSlots }()
	case <-ctx.Done():
		return confidential.AuthResult{}, ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return confidential.AuthResult{}, err // the slot and the end came together
	}
	ctx, cancel := context.WithTimeout(ctx, b.world().cfg.idpTimeout)
	defer cancel()
	return client.AcquireTokenByCredential(ctx, scopes)
}

// requestToken asks Entra ID for e's token and checks the answer.
func (b *Broker) requestToken(e *entry, client *confidential.Client) (*Token, *Error) {
	t := e.t
	e.idpRequests.Add(1)
	sent := time.Now()
	res, err := b.askIdP(t.ctx, client, e.scopes)
	received := time.Now()
	if err != nil {
		if b.ctx.Err() != nil {
			return nil, errClosing()
		}
		if t.ctx.Err() != nil {
			return nil, errTenantRemoved(t)
		}
		kerr := classifyIdPError(err, b.idpContext(t))
		b.obs.IdPRequest(t.name, kerr.AADSTS, false, received.Sub(sent))
		return nil, kerr
	}
	tok, kerr := b.takeReply(e, res, sent, received)
	aadsts := 0
	if kerr != nil {
		aadsts = kerr.AADSTS
	}
	b.obs.IdPRequest(t.name, aadsts, kerr == nil, received.Sub(sent))
	return tok, kerr
}

// takeReply checks Entra ID's answer to e's token request and makes the
// token of it.
func (b *Broker) takeReply(e *entry, res confidential.AuthResult, sent, received time.Time) (*Token, *Error) {
	t := e.t
	if res.Metadata.TokenSource != confidential.TokenSourceIdentityProvider {
		// The empty cache accessor makes every call reach Entra ID; an
		// answer from MSAL's cache would mean that broke.
		return nil, errorf(KindInternal, "MSAL answered tenant %s from its own cache; refusing a token the broker did not see issued", t.name)
	}
	c, cerr := checkReply(t, res.AccessToken, res.ExpiresOn, sent, received)
	if cerr != nil {
		return nil, cerr
	}
	// MSAL turns expires_in (and refresh_in) into wall-clock times as the
	// reply arrives. Keep what is left of them, on the broker's clock.
	issued := b.clock.Now()
	tok := &Token{
		AccessToken: res.AccessToken,
		TenantID:    t.id,
		Scopes:      e.scopes,
		IssuedAt:    issued,
		ExpiresAt:   issued.Add(res.ExpiresOn.Sub(received)),
		Roles:       c.Roles,
		memo:        &memo{},
	}
	if on := res.Metadata.RefreshOn; !on.IsZero() {
		tok.refreshOn = issued.Add(on.Sub(received))
	}
	return tok, nil
}

func (b *Broker) idpContext(t *tenant) idpContext {
	host := t.app.authorityHost
	return idpContext{
		app:        t.app.name,
		clientID:   t.app.clientID,
		tenantID:   t.id,
		host:       host,
		consentURL: fmt.Sprintf("%s/%s/adminconsent?client_id=%s", host, t.id, url.QueryEscape(t.app.clientID)),
		federated:  t.app.assertionFile != "",
	}
}

// isMicrosoftLogin reports whether host is one of Microsoft's Entra ID
// login hosts, for which MSAL's instance discovery applies.
func isMicrosoftLogin(authorityHost string) bool {
	switch strings.TrimPrefix(authorityHost, "https://") {
	case "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
		"login.microsoftonline.us", "login.chinacloudapi.cn", "login.partner.microsoftonline.cn":
		return true
	}
	return false
}
