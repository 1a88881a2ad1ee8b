package broker

import (
	"context"
	"fmt"
	"strings"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// verifyTenants bounds how many of an app's tenants SetCredential tries
// when the first ones cannot vouch for a secret (consent missing etc.).
const verifyTenants = 5

// SetCredential verifies a new client secret for the named app against one
// of its tenants, stores it in the keystore, and re-acquires every tenant of
// the app with it. A secret Entra ID rejects replaces nothing. It returns
// the name of the tenant that verified the secret, or "" when none of the
// app's tenants could (none configured, or none consented yet).
func (b *Broker) SetCredential(ctx context.Context, appName string, secret keystore.Secret) (string, error) {
	a := b.apps[appName]
	if a == nil {
		return "", errorf(KindNotFound, "app %q is not configured; configured apps: %s", appName, strings.Join(sortedKeys(b.apps), ", "))
	}
	if secret.IsZero() {
		return "", errorf(KindInvalidArgument, "the client secret is empty")
	}
	if n := len(secret.Reveal()); n > 4096 {
		return "", errorf(KindInvalidArgument, "a client secret of %d bytes is too long (Entra ID secrets are about 40 characters)", n)
	}
	a.setMu.Lock()
	defer a.setMu.Unlock()

	verified, err := b.verify(ctx, a, secret)
	if err != nil {
		return "", err
	}
	if err := b.store.Set(ctx, a.clientID, secret); err != nil {
		return "", &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf("storing the credential of app %s: %v", a.name, err)}
	}
	a.mu.Lock()
	a.secret = secret
	a.gen++
	a.mu.Unlock()
	b.log.Info("credential stored", "app", a.name, "keystore", b.store.Name(), "verified_with", verified)

	// Every tenant of the app acquires again with the new secret.
	var entries []*entry
	for _, t := range a.tenants {
		t.mu.Lock()
		for _, e := range t.entries {
			entries = append(entries, e)
		}
		t.mu.Unlock()
	}
	go b.acquireAll(entries)
	return verified, nil
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
		rctx, cancel := context.WithTimeout(ctx, b.cfg.idpTimeout)
		_, rerr := c.AcquireTokenByCredential(rctx, a.scopes)
		cancel()
		if rerr == nil {
			return t.name, nil
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
