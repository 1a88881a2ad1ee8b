// Package keystore is where brokerd keeps each app's credential: a client
// secret, or a certificate with its private key.
//
// # Security role
//
// The app's credential is the one long-lived secret in tokenbroker: whoever
// holds it can mint Defender for Endpoint tokens in every customer tenant that
// consented to the app. This package is the only place it is stored and
// loaded; the rest of brokerd handles it as a [Secret], a value that prints,
// marshals and logs as "[redacted]" and hands out the real value only through
// [Secret.Reveal]. Errors from this package name the backend, the operation
// and the account (the app's client id, which is not secret), never the
// value. Nothing here ever writes a secret to a file, argv, environment
// variable or log.
//
// A store holds one value per account; [Credential] says what brokerd
// writes there (a small JSON envelope with the kind, when it was set and a
// secret's expiry) and what it reads back ([Decode]: the envelope, a PEM
// certificate bundle, or a bare client secret), and [ParseCertificate]
// checks a certificate bundle.
//
// # Backends
//
// A [Store] is one of:
//
//   - "keyring" ([NewKeyring]): the OS keyring through
//     github.com/zalando/go-keyring: the freedesktop Secret Service on Linux
//     (gnome-keyring, KeePassXC, ...) over the session D-Bus, the Keychain on
//     macOS, Credential Manager on Windows. The item is stored under service
//     name "tokenbroker" with the account (brokerd passes the app's client id)
//     as user name. On Linux the Secret Service item carries exactly the
//     attributes
//
//     service  = tokenbroker
//     username = <client-id>
//
//     in the default ("login") collection, labelled
//     "Password for '<client-id>' on 'tokenbroker'", so it can be inspected
//     or removed with the standard tools:
//
//     secret-tool lookup service tokenbroker username <client-id>
//     secret-tool clear  service tokenbroker username <client-id>
//
//     Every call runs under a timeout, since a Secret Service can block
//     indefinitely on an unlock prompt.
//
//   - "systemd" ([NewSystemd]): read-only, from the directory systemd passes in
//     $CREDENTIALS_DIRECTORY for LoadCredential= / LoadCredentialEncrypted=.
//     This is the path for a headless system service, which has no session
//     bus and so no Secret Service. The credential name is the account.
//
//   - "directory" ([NewDirectory]): read-only, one file per account in a
//     directory (credentials_dir), the layout of a Kubernetes Secret volume
//     and of Docker secrets (/run/secrets), for containers and hosts without
//     systemd. Files must be private to brokerd ([ErrInsecureFile]); a file
//     replaced in place is reported through [Watcher].
//
//   - "memory" ([NewMemory]): a map in process memory, for tests and
//     `brokerd --dev` only.
//
// # Errors
//
// Get and Delete return an error matching [ErrNotFound] when nothing is
// stored for the account. An error matching [ErrUnavailable] means the
// backend could not be reached, is locked or did not answer in time; its
// message names the backend and how to fix it. [ErrReadOnly],
// [ErrInvalidAccount], [ErrInvalidSecret] and [ErrInsecureFile] report
// requests no backend state change will fix. Use errors.Is to test for all of them.
//
// keystore imports nothing else from tokenbroker but internal/pathtrust,
// which judges the way to a credential file.
package keystore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxSecretSize is the largest client secret, in bytes, brokerd accepts.
// Entra ID client secrets are about 40 bytes.
const MaxSecretSize = 4096

// maxAccountLen bounds account names (client ids are 36-byte GUIDs).
const maxAccountLen = 255

var (
	// ErrNotFound means no secret is stored for the account.
	ErrNotFound = errors.New("no secret stored for this account")

	// ErrUnavailable means the backend cannot be reached, is locked or did not
	// answer in time. Errors matching it carry the backend name and a hint on
	// how to fix it in their message.
	ErrUnavailable = errors.New("secret store unavailable")

	// ErrReadOnly means the backend cannot store or delete secrets (systemd).
	ErrReadOnly = errors.New("secret store is read-only")

	// ErrInvalidAccount means the account name is empty or unusable as a key.
	ErrInvalidAccount = errors.New("invalid account name")

	// ErrInvalidSecret means the value is empty, too large or unusable.
	ErrInvalidSecret = errors.New("invalid secret")
)

// Store keeps one secret per account. Implementations are safe for concurrent
// use.
type Store interface {
	// Get returns the secret stored for account, or an error matching
	// ErrNotFound when there is none.
	Get(ctx context.Context, account string) (Secret, error)
	// Set stores s for account, replacing any previous secret.
	Set(ctx context.Context, account string, s Secret) error
	// Delete removes the secret stored for account, or returns an error
	// matching ErrNotFound when there is none.
	Delete(ctx context.Context, account string) error
	// Writable returns nil when Set and Delete can change what is stored
	// for account, or an error matching ErrReadOnly that says how to
	// provision the secret instead. It makes no call to the backend, so a
	// caller can check before it spends anything on a new secret.
	Writable(account string) error
	// MaxSize is the largest value, in bytes, Set can store (at most
	// MaxValueSize; less in some OS keyrings).
	MaxSize() int
	// Name is the backend name for messages: "keyring", "memory",
	// "systemd" or "directory".
	Name() string
}

// Watcher is implemented by stores whose contents change outside brokerd
// (files rotated in place). Watch calls changed with an account whose stored
// value may have changed since the store last returned it from Get, until
// ctx ends; it then returns nil. It returns an error at once when it cannot
// watch (the store then works without notifications), and an error later if
// watching stops before ctx ends.
type Watcher interface {
	Watch(ctx context.Context, changed func(account string)) error
}

// Options configures Open. The zero value selects the defaults.
type Options struct {
	// Timeout bounds every keyring call (default 5s).
	Timeout time.Duration
	// CredentialsDir is the systemd credentials directory
	// (default $CREDENTIALS_DIRECTORY).
	CredentialsDir string
	// Dir is the directory backend's directory (credentials_dir); it has no
	// default.
	Dir string
}

// Open returns the backend called name: "keyring", "systemd", "directory"
// or "memory".
func Open(name string, o Options) (Store, error) {
	switch name {
	case "keyring":
		return NewKeyring(o.Timeout), nil
	case "systemd":
		return NewSystemd(o.CredentialsDir)
	case "directory":
		return NewDirectory(o.Dir)
	case "memory":
		return NewMemory(), nil
	default:
		return nil, fmt.Errorf("keystore: unknown backend %q: use one of keyring, systemd, directory, memory", name)
	}
}

// opError prefixes err with the backend, operation and account.
func opError(backend, op, account string, err error) error {
	return fmt.Errorf("keystore: %s %s %q: %w", backend, op, account, err)
}

// checkAccount rejects account names no backend can use as a key: empty,
// too long, not UTF-8, containing control characters or path separators,
// or "." / "..". The same rule applies to every backend so that what works
// against the memory store works against the others.
func checkAccount(backend, op, account string) error {
	var why string
	switch {
	case account == "":
		why = "account is empty"
	case len(account) > maxAccountLen:
		why = fmt.Sprintf("account is longer than %d bytes", maxAccountLen)
	case !utf8.ValidString(account):
		why = "account is not valid UTF-8"
	case account == "." || account == "..":
		why = "account must not be . or .."
	case strings.ContainsAny(account, `/\`):
		why = "account must not contain / or \\"
	case strings.ContainsFunc(account, unicode.IsControl):
		why = "account must not contain control characters"
	default:
		return nil
	}
	// Quote with %+q so an odd account cannot inject into a log line.
	return fmt.Errorf("keystore: %s %s %+q: %w: %s", backend, op, account, ErrInvalidAccount, why)
}

// checkSecret rejects empty values and values over the store's MaxSize. It
// never includes the value in the error.
func checkSecret(st Store, op, account string, s Secret) error {
	switch n := len(s.Reveal()); {
	case n == 0:
		return opError(st.Name(), op, account, fmt.Errorf("%w: secret is empty", ErrInvalidSecret))
	case n > st.MaxSize():
		return opError(st.Name(), op, account, fmt.Errorf("%w: the value is %d bytes, the %s store takes at most %d", ErrInvalidSecret, n, st.Name(), st.MaxSize()))
	}
	return nil
}

// unavailableError is an ErrUnavailable with the backend, the cause and a
// hint on how to fix it.
type unavailableError struct {
	backend string // "keyring"
	op      string // "get", "set", "delete"
	account string
	what    string // e.g. "Secret Service"
	cause   error
	hint    string
}

func (e *unavailableError) Error() string {
	return fmt.Sprintf("keystore: %s %s %q: %s unavailable: %v; %s", e.backend, e.op, e.account, e.what, e.cause, e.hint)
}

func (e *unavailableError) Unwrap() error { return e.cause }

func (e *unavailableError) Is(target error) bool { return target == ErrUnavailable }
