package keystore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/keystore"
)

func TestMemory(t *testing.T) {
	st := keystore.NewMemory()
	if st.Name() != "memory" {
		t.Fatalf("Name = %q", st.Name())
	}
	conformance(t, st, "11111111-2222-3333-4444-555555555555", nil)
}

func TestMemoryAccountsAreSeparate(t *testing.T) {
	ctx := context.Background()
	st := keystore.NewMemory()
	a, b := canary(), canary()
	if err := st.Set(ctx, "app-a", keystore.NewSecret(a)); err != nil {
		t.Fatal(err)
	}
	if err := st.Set(ctx, "app-b", keystore.NewSecret(b)); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "app-a"); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get(ctx, "app-b"); err != nil || got.Reveal() != b {
		t.Fatalf("Get(app-b) = %q, %v", got.Reveal(), err)
	}
}

func TestMemoryNotFoundNamesAccount(t *testing.T) {
	_, err := keystore.NewMemory().Get(context.Background(), "my-client-id")
	if !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{"memory", "my-client-id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestMemoryCanceledContext(t *testing.T) {
	st := keystore.NewMemory()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.Get(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get: %v", err)
	}
	if err := st.Set(ctx, "a", keystore.NewSecret("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Set: %v", err)
	}
	if err := st.Delete(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete: %v", err)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := st.Get(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get with expired deadline: %v", err)
	}
}

// Run with -race.
func TestMemoryConcurrent(t *testing.T) {
	ctx := context.Background()
	st := keystore.NewMemory()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				acct := fmt.Sprintf("app-%d", i%5)
				switch (g + i) % 3 {
				case 0:
					if err := st.Set(ctx, acct, keystore.NewSecret(fmt.Sprintf("v%d", i))); err != nil {
						t.Error(err)
					}
				case 1:
					if _, err := st.Get(ctx, acct); err != nil && !errors.Is(err, keystore.ErrNotFound) {
						t.Error(err)
					}
				case 2:
					if err := st.Delete(ctx, acct); err != nil && !errors.Is(err, keystore.ErrNotFound) {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestOpen(t *testing.T) {
	for _, name := range []string{"keyring", "memory"} {
		st, err := keystore.Open(name, keystore.Options{})
		if err != nil || st.Name() != name {
			t.Fatalf("Open(%q) = %v, %v", name, st, err)
		}
	}
	dir := t.TempDir()
	st, err := keystore.Open("systemd", keystore.Options{CredentialsDir: dir})
	if err != nil || st.Name() != "systemd" {
		t.Fatalf("Open(systemd) = %v, %v", st, err)
	}
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := keystore.Open("systemd", keystore.Options{}); err == nil || !strings.Contains(err.Error(), "CREDENTIALS_DIRECTORY") {
		t.Fatalf("Open(systemd) without CREDENTIALS_DIRECTORY: err = %v", err)
	}
	for _, bad := range []string{"", "file", "Keyring", "vault"} {
		_, err := keystore.Open(bad, keystore.Options{})
		if err == nil {
			t.Fatalf("Open(%q) succeeded", bad)
		}
		for _, want := range []string{"keyring", "systemd", "directory", "memory"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Open(%q) error %q does not list %q", bad, err, want)
			}
		}
	}
}
