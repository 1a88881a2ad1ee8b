package broker

import (
	"fmt"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// The kinds of credential an app authenticates with, as CredentialInfo
// names them.
const (
	CredentialSecret        = "secret"
	CredentialCertificate   = "certificate"
	CredentialAssertionFile = "assertion_file"
)

// expiryWarning is how long before a credential expires the broker starts
// warning, and expiryWarnEvery how often it repeats the warning.
const (
	expiryWarning   = 30 * 24 * time.Hour
	expiryWarnEvery = 24 * time.Hour
)

// CredentialInfo describes an app's credential without its value.
type CredentialInfo struct {
	App string
	// Kind is CredentialSecret, CredentialCertificate or
	// CredentialAssertionFile.
	Kind string
	// Keystore is the store it is kept in; "" for an assertion file.
	Keystore string
	// SetAt is when brokerctl credential set stored it; zero when unknown.
	SetAt time.Time
	// ExpiresAt is a certificate's NotAfter, or a secret's expiry as its
	// owner gave it; zero when unknown.
	ExpiresAt time.Time
	// A certificate's thumbprints (upper-case hex) and subject.
	ThumbprintSHA1, ThumbprintSHA256, Subject string
	// AssertionFile is the file of a federated app.
	AssertionFile string
	// SendX5C: the certificate chain goes with each client assertion.
	SendX5C bool
}

// held is an app's credential as the broker holds it: what the keystore
// gave (or the app's assertion file), parsed, and the MSAL credential made
// from it. A held never changes; a new credential is a new held.
type held struct {
	c    keystore.Credential
	cert *keystore.Certificate // KindCertificate only
	msal confidential.Credential
	info CredentialInfo
}

// newHeld parses c for app a. Its errors never contain key material.
func (b *Broker) newHeld(a *app, c keystore.Credential) (*held, error) {
	h := &held{c: c, info: CredentialInfo{App: a.name, Keystore: b.store.Name(), SetAt: c.SetAt}}
	var err error
	switch c.Kind {
	case keystore.KindSecret:
		if n := len(c.Value.Reveal()); n == 0 || n > keystore.MaxSecretSize {
			return nil, fmt.Errorf("%w: the client secret is %d bytes (1 to %d)", keystore.ErrInvalidSecret, n, keystore.MaxSecretSize)
		}
		if err := keystore.CheckClientSecret(c.Value.Reveal()); err != nil {
			return nil, err
		}
		h.info.Kind, h.info.ExpiresAt = CredentialSecret, c.Expires
		h.msal, err = confidential.NewCredFromSecret(c.Value.Reveal())
	case keystore.KindCertificate:
		if h.cert, err = keystore.ParseCertificate([]byte(c.Value.Reveal())); err != nil {
			return nil, err
		}
		leaf := h.cert.Chain[0]
		h.info.Kind, h.info.ExpiresAt, h.info.SendX5C = CredentialCertificate, leaf.NotAfter, a.sendX5C
		h.info.ThumbprintSHA1, h.info.ThumbprintSHA256 = h.cert.ThumbprintSHA1(), h.cert.ThumbprintSHA256()
		h.info.Subject = leaf.Subject.String()
		h.msal, err = confidential.NewCredFromCert(h.cert.Chain, h.cert.Key)
	default:
		return nil, fmt.Errorf("%w: unknown credential kind %+q", keystore.ErrInvalidSecret, c.Kind)
	}
	if err != nil {
		// MSAL's errors about a secret or a key name no key material.
		return nil, fmt.Errorf("%w: %v", keystore.ErrInvalidSecret, err)
	}
	return h, nil
}

// assertionHeld is the credential of an app with an assertion file: the
// file is read again for every token request.
func (b *Broker) assertionHeld(a *app) *held {
	return &held{
		msal: confidential.NewCredFromAssertionCallback(b.assertionCallback(a)),
		info: CredentialInfo{App: a.name, Kind: CredentialAssertionFile, AssertionFile: a.assertionFile},
	}
}

// same reports whether h and o hold the same credential value.
func (h *held) same(o *held) bool {
	return h != nil && o != nil && h.c.Kind == o.c.Kind && h.c.Value.Reveal() == o.c.Value.Reveal()
}

// expiryWarningLocked returns the warning to log about a's credential, or
// "" when it is not due: from expiryWarning before the credential expires,
// at most once per expiryWarnEvery. mu is held.
func (b *Broker) expiryWarningLocked(a *app, now time.Time) string {
	h := a.cred
	if h == nil || h.info.ExpiresAt.IsZero() || h.info.ExpiresAt.Sub(now) > expiryWarning {
		return ""
	}
	if !a.expiryWarnedAt.IsZero() && now.Sub(a.expiryWarnedAt) < expiryWarnEvery {
		return ""
	}
	a.expiryWarnedAt = now
	what := "client secret"
	if h.cert != nil {
		what = "certificate " + h.info.ThumbprintSHA1
	}
	left := h.info.ExpiresAt.Sub(now)
	if left <= 0 {
		return fmt.Sprintf("the %s of app %s expired at %s: add a new credential to app %s in Entra ID, then: brokerctl credential set --app %s",
			what, a.name, h.info.ExpiresAt.UTC().Format(time.RFC3339), a.clientID, a.name)
	}
	return fmt.Sprintf("the %s of app %s expires at %s (in %d days): add a new credential to app %s in Entra ID, then: brokerctl credential set --app %s",
		what, a.name, h.info.ExpiresAt.UTC().Format(time.RFC3339), int(left.Hours()/24), a.clientID, a.name)
}

// warnExpiry logs a's expiry warning when it is due.
func (b *Broker) warnExpiry(a *app) {
	b.mu.Lock()
	msg := b.expiryWarningLocked(a, b.clock.Now())
	b.mu.Unlock()
	if msg != "" {
		b.log.Warn("credential expires soon", "app", a.name, "remedy", msg)
	}
}
