package keystore

import (
	"context"
	"sync"
)

type memoryStore struct {
	mu sync.Mutex
	m  map[string]Secret
}

// NewMemory returns an empty Store kept in process memory. It is for tests and
// `brokerd --dev` only: secrets are lost when the process exits. It applies
// the same account and secret checks as the other backends.
func NewMemory() Store {
	return &memoryStore{m: make(map[string]Secret)}
}

func (m *memoryStore) Name() string { return "memory" }

func (m *memoryStore) Writable(string) error { return nil }

func (m *memoryStore) MaxSize() int { return MaxValueSize }

func (m *memoryStore) Get(ctx context.Context, account string) (Secret, error) {
	if err := checkAccount(m.Name(), "get", account); err != nil {
		return Secret{}, err
	}
	if err := ctx.Err(); err != nil {
		return Secret{}, opError(m.Name(), "get", account, err)
	}
	m.mu.Lock()
	s, ok := m.m[account]
	m.mu.Unlock()
	if !ok {
		return Secret{}, opError(m.Name(), "get", account, ErrNotFound)
	}
	return s, nil
}

func (m *memoryStore) Set(ctx context.Context, account string, s Secret) error {
	if err := checkAccount(m.Name(), "set", account); err != nil {
		return err
	}
	if err := checkSecret(m, "set", account, s); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return opError(m.Name(), "set", account, err)
	}
	m.mu.Lock()
	m.m[account] = s
	m.mu.Unlock()
	return nil
}

func (m *memoryStore) Delete(ctx context.Context, account string) error {
	if err := checkAccount(m.Name(), "delete", account); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return opError(m.Name(), "delete", account, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.m[account]; !ok {
		return opError(m.Name(), "delete", account, ErrNotFound)
	}
	delete(m.m, account)
	return nil
}
