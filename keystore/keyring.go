package keystore

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/zalando/go-keyring"
)

// KeyringService is the service name every keyring item is stored under
// (the Secret Service attribute "service").
const KeyringService = "tokenbroker"

// DefaultKeyringTimeout bounds a keyring call when NewKeyring is given 0.
const DefaultKeyringTimeout = 5 * time.Second

// maxBlockedKeyringCalls bounds the keyring calls left running in the
// background after their caller gave up (see NewKeyring).
const maxBlockedKeyringCalls = 4

type keyringStore struct {
	timeout time.Duration
	// slots holds one token per keyring call still running, including calls
	// whose caller timed out and left.
	slots chan struct{}
}

// NewKeyring returns a Store in the OS keyring (see the package comment for
// the item's service, user name and Secret Service attributes).
//
// go-keyring calls block and take no context, so every call runs in its own
// goroutine and the caller gives up at the earlier of ctx's deadline and
// timeout (DefaultKeyringTimeout if timeout <= 0) with an error matching
// ErrUnavailable and context.DeadlineExceeded. The abandoned call keeps
// running until the backend answers (a timed-out Set may still take effect
// later); at most 4 such calls are kept, after which further calls fail with
// ErrUnavailable until one finishes, so a hung Secret Service cannot pile up
// goroutines.
func NewKeyring(timeout time.Duration) Store {
	if timeout <= 0 {
		timeout = DefaultKeyringTimeout
	}
	return &keyringStore{timeout: timeout, slots: make(chan struct{}, maxBlockedKeyringCalls)}
}

func (k *keyringStore) Name() string { return "keyring" }

// MaxSize is what the OS keyring takes through go-keyring: the Keychain
// takes a command line of 4096 bytes holding the value in base64, Credential
// Manager 2560 bytes; the Secret Service has no small limit.
func (k *keyringStore) MaxSize() int {
	switch runtime.GOOS {
	case "darwin":
		return 2900
	case "windows":
		return 2560
	}
	return MaxValueSize
}

// Writable is nil: whether the keyring takes a secret is known only by
// trying (a locked collection fails the Set).
func (k *keyringStore) Writable(string) error { return nil }

func (k *keyringStore) Get(ctx context.Context, account string) (Secret, error) {
	const op = "get"
	if err := checkAccount(k.Name(), op, account); err != nil {
		return Secret{}, err
	}
	v, err := call(ctx, k, op, account, func() (string, error) { return keyring.Get(KeyringService, account) })
	if err != nil {
		return Secret{}, err
	}
	return NewSecret(v), nil
}

func (k *keyringStore) Set(ctx context.Context, account string, s Secret) error {
	const op = "set"
	if err := checkAccount(k.Name(), op, account); err != nil {
		return err
	}
	if err := checkSecret(k, op, account, s); err != nil {
		return err
	}
	_, err := call(ctx, k, op, account, func() (struct{}, error) {
		return struct{}{}, keyring.Set(KeyringService, account, s.Reveal())
	})
	return err
}

func (k *keyringStore) Delete(ctx context.Context, account string) error {
	const op = "delete"
	if err := checkAccount(k.Name(), op, account); err != nil {
		return err
	}
	_, err := call(ctx, k, op, account, func() (struct{}, error) {
		return struct{}{}, keyring.Delete(KeyringService, account)
	})
	return err
}

type result[T any] struct {
	v   T
	err error
}

// call runs f in a goroutine under k's timeout and ctx, and maps its error.
func call[T any](ctx context.Context, k *keyringStore, op, account string, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		// The caller gave up before the backend was asked.
		return zero, opError(k.Name(), op, account, err)
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()

	select {
	case k.slots <- struct{}{}:
	case <-ctx.Done():
		return zero, k.doneError(ctx, op, account, fmt.Errorf("%d earlier calls are still blocked: %w", cap(k.slots), ctx.Err()))
	}
	done := make(chan result[T], 1) // buffered: the goroutine never blocks on an abandoned call
	go func() {
		defer func() { <-k.slots }()
		v, err := f()
		done <- result[T]{v, err}
	}()

	select {
	case r := <-done:
		if r.err != nil {
			return zero, k.mapError(op, account, r.err)
		}
		return r.v, nil
	case <-ctx.Done():
		return zero, k.doneError(ctx, op, account, fmt.Errorf("no answer within the deadline (timeout %v): %w", k.timeout, ctx.Err()))
	}
}

// doneError reports a call abandoned because ctx ended: a deadline means the
// backend did not answer in time (unavailable); a cancellation is the
// caller's choice and is reported as such.
func (k *keyringStore) doneError(ctx context.Context, op, account string, cause error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return opError(k.Name(), op, account, ctx.Err())
	}
	what, hint := keyringHint()
	return &unavailableError{
		backend: k.Name(), op: op, account: account, what: what, cause: cause,
		hint: "it may be waiting on an unlock prompt; " + hint,
	}
}

// mapError maps a go-keyring error. go-keyring's errors never contain the
// secret; the underlying D-Bus or OS errors name methods and objects only.
func (k *keyringStore) mapError(op, account string, err error) error {
	switch {
	case errors.Is(err, keyring.ErrNotFound):
		return opError(k.Name(), op, account, fmt.Errorf("%w (service %q)", ErrNotFound, KeyringService))
	case errors.Is(err, keyring.ErrSetDataTooBig):
		return opError(k.Name(), op, account, fmt.Errorf("%w: the OS keyring refused the secret as too large", ErrInvalidSecret))
	}
	what, hint := keyringHint()
	return &unavailableError{backend: k.Name(), op: op, account: account, what: what, cause: err, hint: hint}
}

// keyringHint names the OS keyring go-keyring uses here and how to make it
// reachable.
func keyringHint() (what, hint string) {
	switch runtime.GOOS {
	case "darwin":
		return "macOS Keychain", "unlock the login keychain (security unlock-keychain); brokerd must run in the user's login session"
	case "windows":
		return "Windows Credential Manager", "brokerd must run as the user who owns the credential, in a session with a loaded user profile"
	default:
		return "Secret Service", "start gnome-keyring (or another Secret Service provider) and unlock the login keyring; " +
			"brokerd needs a session D-Bus (DBUS_SESSION_BUS_ADDRESS); " +
			"for a system service without a user session use the systemd backend (LoadCredentialEncrypted=)"
	}
}
