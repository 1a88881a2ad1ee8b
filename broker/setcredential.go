package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// certificateSkew is how far in the future a new certificate's NotBefore
// may be: Entra ID allows for clocks that differ by a few minutes.
const certificateSkew = 5 * time.Minute

// SetRequest is a new credential for an app.
type SetRequest struct {
	// App is the configured name of the app.
	App string
	// Kind is keystore.KindSecret or keystore.KindCertificate.
	Kind keystore.Kind
	// Value is the client secret, or the certificate's PEM bundle (see
	// keystore.ParseCertificate).
	Value keystore.Secret
	// Expires is when a client secret expires; zero when unknown. It is an
	// error for a certificate, whose expiry is its own.
	Expires time.Time
	// VerifyTenant, when set, is the tenant (name, id or domain) that must
	// vouch for the credential; otherwise the first of the app's tenants
	// that can.
	VerifyTenant string
	// NoVerify stores the credential without asking Entra ID.
	NoVerify bool
}

// SetCredential verifies a new credential for an app against one of its
// tenants (unless req.NoVerify), stores it in the keystore, and
// re-acquires every tenant of the app with it. A credential Entra ID
// rejects replaces nothing, and nothing is sent to Entra ID for a keystore
// that cannot store it. It returns the name of the tenant that verified the
// credential, or "" when it was not verified (NoVerify, or none of the
// app's tenants could: none consented yet), and what is now stored.
//
// When the keystore does not answer the write in time, the outcome is
// unknown: SetCredential returns KindOutcomeUnknown and keeps using the
// credential it had, and the broker reads the keystore again, with
// backoff, for rereadWindow, switching to whatever the keystore holds.
func (b *Broker) SetCredential(ctx context.Context, req SetRequest) (string, CredentialInfo, error) {
	a, err := b.keystoreApp(req.App)
	if err != nil {
		return "", CredentialInfo{}, err
	}
	now := b.clock.Now()
	h, err := b.newCredential(a, req, now)
	if err != nil {
		return "", CredentialInfo{}, err
	}
	var only *tenant
	if req.VerifyTenant != "" {
		if req.NoVerify {
			return "", CredentialInfo{}, errorf(KindInvalidArgument, "verify_tenant and no_verify exclude each other")
		}
		if only, err = b.appTenant(a, req.VerifyTenant); err != nil {
			return "", CredentialInfo{}, err
		}
	}
	encoded := h.c.Encode()
	if n, max := len(encoded.Reveal()), b.store.MaxSize(); n > max {
		return "", CredentialInfo{}, errorf(KindInvalidArgument, "the %s takes %d bytes as stored, and the %s keystore holds at most %d: "+
			"use a certificate without its chain, or the directory or systemd keystore", h.info.Kind, n, b.store.Name(), max)
	}
	if err := b.store.Writable(a.clientID); err != nil {
		return "", CredentialInfo{}, errorf(KindFailedPrecondition, "brokerd cannot store credentials in the %s keystore: %v", b.store.Name(), err)
	}
	ctx, done, err := b.beginChange(ctx, a)
	if err != nil {
		return "", CredentialInfo{}, err
	}
	defer done()
	verified := ""
	if !req.NoVerify {
		if verified, err = b.verify(ctx, a, h, only); err != nil {
			if b.ctx.Err() != nil {
				return "", CredentialInfo{}, errClosing()
			}
			return "", CredentialInfo{}, err
		}
	}
	sctx, scancel := context.WithTimeout(ctx, b.keystoreTimeout)
	err = b.store.Set(sctx, a.clientID, encoded)
	scancel()
	b.observeStore("set", err)
	now = b.clock.Now()
	if err != nil {
		if b.ctx.Err() != nil {
			// Closing: the write may still land; the next start reads it.
			return "", CredentialInfo{}, errorf(KindUnavailable, "brokerd is shutting down: the new credential of app %s may or may not be stored; "+
				"check with `brokerctl credential show --app %s` once brokerd is back", a.name, a.name)
		}
		return "", CredentialInfo{}, b.noteStoreError(a, b.keystoreWriteError(a, err, now))
	}
	b.mu.Lock()
	// A window of re-reads after an earlier lost write stays open: that
	// write can still land, and then the store holds it.
	a.cred, a.loadErr, a.loadFailures, a.credWarned, a.expiryWarnedAt, a.storeErr = h, nil, 0, false, time.Time{}, ""
	a.gen++
	if a.rereadUntil.IsZero() {
		b.unqueueLocked(&a.task) // no read of the store is needed now
	}
	b.reacquireLocked(a, now)
	expiry := b.expiryWarningLocked(a, now)
	replaced := a.removed
	b.mu.Unlock()
	if replaced {
		// A reload replaced the app while its credential was being set:
		// the app that replaced it reads the store again.
		b.credentialChanged(a.clientID)
	}
	args := []any{"app", a.name, "keystore", b.store.Name(), "kind", h.info.Kind, "verified_with", verified}
	if h.cert != nil {
		args = append(args, "thumbprint", h.info.ThumbprintSHA1, "not_after", h.info.ExpiresAt)
	}
	if req.NoVerify {
		b.log.Warn("credential stored WITHOUT verification (no_verify)", args...)
	} else {
		b.log.Info("credential stored", args...)
	}
	if expiry != "" {
		b.log.Warn("credential expires soon", "app", a.name, "remedy", expiry)
	}
	return verified, h.info, nil
}

// newCredential checks a new credential and prepares it for storing.
func (b *Broker) newCredential(a *app, req SetRequest, now time.Time) (*held, error) {
	c := keystore.Credential{Kind: req.Kind, SetAt: now.UTC().Truncate(time.Second), Expires: req.Expires}
	switch req.Kind {
	case keystore.KindSecret:
		n := len(req.Value.Reveal())
		switch {
		case n == 0:
			return nil, errorf(KindInvalidArgument, "the client secret is empty")
		case n > keystore.MaxSecretSize:
			return nil, errorf(KindInvalidArgument, "a client secret of %d bytes is too long (at most %d; Entra ID secrets are about 40 characters)", n, keystore.MaxSecretSize)
		case !req.Expires.IsZero() && !req.Expires.After(now):
			return nil, errorf(KindInvalidArgument, "the secret's expiry %s is in the past", req.Expires.UTC().Format(time.RFC3339))
		}
		c.Value = req.Value
	case keystore.KindCertificate:
		if !req.Expires.IsZero() {
			return nil, errorf(KindInvalidArgument, "an expiry applies to a client secret; a certificate's is its own (notAfter)")
		}
		cert, err := keystore.ParseCertificate([]byte(req.Value.Reveal()))
		if err != nil {
			return nil, errorf(KindInvalidArgument, "%v", err)
		}
		leaf := cert.Chain[0]
		switch {
		case !leaf.NotAfter.After(now):
			return nil, errorf(KindInvalidArgument, "the certificate %s expired at %s", cert.ThumbprintSHA1(), leaf.NotAfter.UTC().Format(time.RFC3339))
		case leaf.NotBefore.After(now.Add(certificateSkew)):
			return nil, errorf(KindInvalidArgument, "the certificate %s is not valid before %s", cert.ThumbprintSHA1(), leaf.NotBefore.UTC().Format(time.RFC3339))
		}
		pem := cert.PEM()
		c.Value = keystore.NewSecret(string(pem))
		clear(pem)
	default:
		return nil, errorf(KindInvalidArgument, "no credential: send a client secret or a certificate")
	}
	h, err := b.newHeld(a, c)
	if err != nil {
		return nil, errorf(KindInvalidArgument, "%v", err)
	}
	return h, nil
}

// keystoreApp returns the named app, which must keep its credential in
// the keystore.
func (b *Broker) keystoreApp(name string) (*app, error) {
	apps := b.world().apps
	a := apps[name]
	if a == nil {
		return nil, errorf(KindNotFound, "app %+q is not configured; configured apps: %s", clip(name), strings.Join(sortedKeys(apps), ", "))
	}
	if a.assertionFile != "" {
		return nil, errorf(KindFailedPrecondition, "app %s authenticates with the federated assertion in %s (assertion_file), not a stored credential", a.name, a.assertionFile)
	}
	return a, nil
}

// appTenant resolves name (a tenant's name, id or domain) to one of a's
// tenants.
func (b *Broker) appTenant(a *app, name string) (*tenant, error) {
	w := b.world()
	t := w.lookup[strings.ToLower(name)]
	if t == nil || t.app != a {
		names := make([]string, 0, len(w.byApp[a]))
		for _, t := range w.byApp[a] {
			names = append(names, t.name)
		}
		return nil, errorf(KindInvalidArgument, "%+q is not a tenant of app %s; its tenants: %s", clip(name), a.name, strings.Join(names, ", "))
	}
	return t, nil
}

// beginChange starts a change of a's credential: it counts the call in
// wg (Close waits for it), derives a context Close cancels, and waits for
// a's turn (app.setting). done ends all three. An app a reload replaced
// while the call waited is refused: its tenants, and so what would verify
// the credential, are gone.
func (b *Broker) beginChange(ctx context.Context, a *app) (context.Context, func(), error) {
	if err := b.enter(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	end := func() {
		stop()
		cancel()
		b.wg.Done()
	}
	select {
	case a.setting <- struct{}{}:
		b.mu.Lock()
		removed := a.removed
		b.mu.Unlock()
		if removed {
			<-a.setting
			end()
			return nil, nil, &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf(
				"app %s was changed or removed by a reload of brokerd's configuration while this call waited; the keystore was not touched; run the command again", a.name)}
		}
		return ctx, func() { <-a.setting; end() }, nil
	case <-ctx.Done():
		end()
		if b.ctx.Err() != nil {
			return nil, nil, errClosing()
		}
		return nil, nil, ctxError(ctx, "waiting for another credential change of app "+a.name)
	}
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
				"brokerd reads the keystore again and uses whatever it holds; check with `brokerctl credential show --app %s` in a minute, "+
				"and set the credential again if app %s's tenants fail", store, a.name, a.name, a.name)}
	case errors.Is(err, keystore.ErrUnavailable):
		return &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf(
			"the new credential of app %s was not stored: %v", a.name, err)}
	case errors.Is(err, keystore.ErrInvalidSecret):
		return &Error{Kind: KindInvalidArgument, Msg: fmt.Sprintf("the new credential of app %s was not stored: %v", a.name, err)}
	}
	return &Error{Kind: KindFailedPrecondition, Msg: fmt.Sprintf("the new credential of app %s was not stored: %v", a.name, err)}
}

// noteStoreError records e as why the last keystore call for a's
// credential failed, for ListTenants, and returns it.
func (b *Broker) noteStoreError(a *app, e *Error) *Error {
	b.mu.Lock()
	a.storeErr = e.Msg
	b.mu.Unlock()
	return e
}

// verify asks Entra ID for a token with the new credential: in only, when
// given, else in up to verifyTenants of the app's tenants. A rejected
// credential or an unreachable Entra ID is an error; tenants that cannot
// vouch (not consented, deleted) are skipped, unless only names one.
func (b *Broker) verify(ctx context.Context, a *app, h *held, only *tenant) (string, error) {
	tenants := b.tenantsOf(a)
	if len(tenants) == 0 {
		b.mu.Lock()
		removed := a.removed
		b.mu.Unlock()
		if removed {
			return "", &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf(
				"the new credential of app %s was not stored: a reload of brokerd's configuration changed or removed the app; run the command again", a.name)}
		}
	}
	tenants = tenants[:min(len(tenants), verifyTenants)]
	if only != nil {
		tenants = []*tenant{only}
	}
	for _, t := range tenants {
		c, err := b.newClient(t, h)
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
		if e.TenantOnly && only == nil {
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

// GetCredential describes the credential the broker holds for an app,
// reading it from the keystore (within the keystore timeout) when it holds
// none, at once even while a failed read waits for its retry time: the
// caller may just have fixed the keystore.
func (b *Broker) GetCredential(ctx context.Context, appName string) (CredentialInfo, error) {
	apps := b.world().apps
	a := apps[appName]
	if a == nil {
		return CredentialInfo{}, errorf(KindNotFound, "app %+q is not configured; configured apps: %s", clip(appName), strings.Join(sortedKeys(apps), ", "))
	}
	if err := b.enter(); err != nil {
		return CredentialInfo{}, err
	}
	defer b.wg.Done()
	// Asked by an administrator, who may just have unlocked the keyring:
	// with no credential in hand, read it now rather than at the retry
	// time, or take the answer of the read in flight. A read ends within
	// the keystore timeout, or at Close.
	read := false
	for {
		b.mu.Lock()
		if h := a.cred; h != nil {
			b.mu.Unlock()
			return h.info, nil
		}
		if a.load == nil {
			if read && a.loadErr != nil {
				err := a.loadErr
				b.mu.Unlock()
				return CredentialInfo{}, err
			}
			b.startLoadLocked(a)
		}
		read = true
		ld := a.load
		b.mu.Unlock()
		select {
		case <-ld.done:
		case <-ctx.Done():
			return CredentialInfo{}, ctxError(ctx, "reading the credential of app "+a.name)
		case <-b.ctx.Done():
			return CredentialInfo{}, errClosing()
		}
	}
}

// DeleteCredential removes an app's credential from the keystore and stops
// using it: the tokens it already has stay cached and served until they
// expire, and nothing is acquired for the app until a credential is set
// again. It returns what it deleted.
func (b *Broker) DeleteCredential(ctx context.Context, appName string) (CredentialInfo, error) {
	a, err := b.keystoreApp(appName)
	if err != nil {
		return CredentialInfo{}, err
	}
	if err := b.store.Writable(a.clientID); err != nil {
		return CredentialInfo{}, errorf(KindFailedPrecondition, "brokerd cannot delete credentials from the %s keystore: %v", b.store.Name(), err)
	}
	ctx, done, err := b.beginChange(ctx, a)
	if err != nil {
		return CredentialInfo{}, err
	}
	defer done()

	b.mu.Lock()
	info := CredentialInfo{App: a.name, Keystore: b.store.Name()}
	if a.cred != nil {
		info = a.cred.info
	}
	b.mu.Unlock()
	dctx, dcancel := context.WithTimeout(ctx, b.keystoreTimeout)
	err = b.store.Delete(dctx, a.clientID)
	dcancel()
	b.observeStore("delete", err)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		// Nothing to delete; what brokerd holds goes all the same, as a
		// restart would lose it.
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		if b.ctx.Err() != nil {
			return CredentialInfo{}, errClosing()
		}
		// An abandoned keyring call can still take effect; deleting
		// again is harmless either way.
		return CredentialInfo{}, b.noteStoreError(a, &Error{Kind: KindOutcomeUnknown, Msg: fmt.Sprintf(
			"the %s keystore did not answer in time: the credential of app %s may or may not be deleted, and brokerd still uses it; "+
				"run brokerctl credential delete --app %s again", b.store.Name(), a.name, a.name)})
	case errors.Is(err, keystore.ErrUnavailable):
		return CredentialInfo{}, b.noteStoreError(a, &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf(
			"the credential of app %s was not deleted: %v", a.name, err)})
	case err != nil:
		if b.ctx.Err() != nil {
			return CredentialInfo{}, errClosing()
		}
		return CredentialInfo{}, b.noteStoreError(a, errorf(KindFailedPrecondition, "the credential of app %s was not deleted: %v", a.name, err))
	}
	b.mu.Lock()
	had := a.cred != nil
	b.forgetCredentialLocked(a)
	if a.removed {
		// A reload replaced the app during the delete: the app that
		// replaced it may have read the credential meanwhile. It forgets
		// it too (a read again would keep it: a failed read keeps what
		// an app has).
		for _, x := range b.world().apps {
			if x.clientID == a.clientID && x.assertionFile == "" {
				b.forgetCredentialLocked(x)
			}
		}
	}
	b.mu.Unlock()
	if err != nil && !had {
		return CredentialInfo{}, errorf(KindNotFound, "no credential of app %s is stored in the %s keystore", a.name, b.store.Name())
	}
	b.log.Info("credential deleted", "app", a.name, "keystore", b.store.Name(), "kind", info.Kind)
	return info, nil
}

// forgetCredentialLocked makes a hold no credential, as after a delete:
// a new generation, and no keystore read scheduled. Flights with the old
// credential land as stale and their entries wait for a credential. mu
// is held.
func (b *Broker) forgetCredentialLocked(a *app) {
	a.cred, a.loadErr, a.loadFailures, a.credWarned, a.expiryWarnedAt, a.storeErr = nil, nil, 0, false, time.Time{}, ""
	a.rereadUntil, a.rereads = time.Time{}, 0
	a.gen++
	b.unqueueLocked(&a.task)
}
