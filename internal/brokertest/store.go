package brokertest

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// Store is an in-memory keystore.Store whose calls a test can hold, to
// play a Secret Service that hangs (on an unlock prompt, say) and answers
// later. Held calls behave like the keyring backend's: a Get that is
// released answers; a Get whose context ends first fails with an error
// matching keystore.ErrUnavailable; a held Set whose context ends first
// fails the same way but still writes when it is released, as an
// abandoned keyring call does.
type Store struct {
	keystore.Store
	gets, sets atomic.Int64

	mu      sync.Mutex
	getHold map[string]chan struct{} // by account; closed to release
	setHold chan struct{}
}

// NewStore returns an empty Store.
func NewStore() *Store {
	return &Store{Store: keystore.NewMemory(), getHold: map[string]chan struct{}{}}
}

// Gets returns how many Get calls the store has received.
func (s *Store) Gets() int64 { return s.gets.Load() }

// Sets returns how many Set calls the store has received.
func (s *Store) Sets() int64 { return s.sets.Load() }

// HoldGets makes Get calls for account wait until release is called.
func (s *Store) HoldGets(account string) (release func()) {
	c := make(chan struct{})
	s.mu.Lock()
	s.getHold[account] = c
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.getHold, account)
			s.mu.Unlock()
			close(c)
		})
	}
}

// HoldSets makes Set calls wait until release is called.
func (s *Store) HoldSets() (release func()) {
	c := make(chan struct{})
	s.mu.Lock()
	s.setHold = c
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.setHold = nil
			s.mu.Unlock()
			close(c)
		})
	}
}

// Get returns the stored secret, after any hold on account.
func (s *Store) Get(ctx context.Context, account string) (keystore.Secret, error) {
	s.gets.Add(1)
	s.mu.Lock()
	hold := s.getHold[account]
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return keystore.Secret{}, hung(ctx)
		}
	}
	return s.Store.Get(ctx, account)
}

// Set stores sec, after any hold. A Set whose ctx ends during the hold
// fails but writes when the hold is released.
func (s *Store) Set(ctx context.Context, account string, sec keystore.Secret) error {
	s.sets.Add(1)
	s.mu.Lock()
	hold := s.setHold
	s.mu.Unlock()
	if hold == nil {
		return s.Store.Set(ctx, account, sec)
	}
	done := make(chan error, 1)
	go func() {
		<-hold
		done <- s.Store.Set(context.Background(), account, sec)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return hung(ctx)
	}
}

// hungError is what a held call returns when its caller gives up.
type hungError struct{ cause error }

func (e hungError) Error() string {
	return "keystore: test store: no answer within the deadline: " + e.cause.Error()
}
func (e hungError) Unwrap() error        { return e.cause }
func (e hungError) Is(target error) bool { return target == keystore.ErrUnavailable }

func hung(ctx context.Context) error { return hungError{ctx.Err()} }

// StoredSecret returns the client secret st holds for account, whatever
// form it is stored in; "" when there is none or it is not a secret.
func StoredSecret(st keystore.Store, account string) string {
	v, err := st.Get(context.Background(), account)
	if err != nil {
		return ""
	}
	c, err := keystore.Decode(v)
	if err != nil || c.Kind != keystore.KindSecret {
		return ""
	}
	return c.Value.Reveal()
}
