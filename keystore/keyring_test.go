package keystore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/testuser"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// These tests talk to a real Secret Service. `make test` runs them inside
//
//	dbus-run-session -- sh -c 'echo -n pw | gnome-keyring-daemon --unlock --components=secrets >/dev/null; go test ./...'
//
// Without a reachable Secret Service they skip, unless $CI is non-empty, in
// which case they fail: CI must never silently skip the keyring backend.

// keyringOrSkip returns a keyring Store after proving, with a real write of a
// throwaway item, that a Secret Service is reachable and unlocked.
func keyringOrSkip(t *testing.T) keystore.Store {
	t.Helper()
	st := keystore.NewKeyring(10 * time.Second)
	probe := testAccount("probe")
	err := st.Set(context.Background(), probe, keystore.NewSecret("probe"))
	if errors.Is(err, keystore.ErrUnavailable) {
		testuser.SkipOrFail(t, "no usable Secret Service: %v", err)
	}
	if err != nil {
		t.Fatalf("probe Set: %v", err)
	}
	if err := st.Delete(context.Background(), probe); err != nil {
		t.Fatalf("probe Delete: %v", err)
	}
	return st
}

// secretTool returns the path of secret-tool (libsecret-tools).
func secretTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("secret-tool")
	if err != nil {
		testuser.SkipOrFail(t, "secret-tool not installed (apt-get install libsecret-tools)")
	}
	return p
}

// testAccount returns a unique account for this run.
func testAccount(what string) string {
	return "keystore-test-" + what + "-" + strings.ToLower(rand.Text())
}

// cleanupAccount removes account from the keyring when the test ends.
func cleanupAccount(t *testing.T, st keystore.Store, account string) {
	t.Cleanup(func() {
		err := st.Delete(context.Background(), account)
		if err != nil && !errors.Is(err, keystore.ErrNotFound) {
			t.Errorf("cleanup of %s: %v", account, err)
		}
	})
}

// lookup runs `secret-tool lookup service tokenbroker username <account>`.
// found is false when secret-tool reports no such item.
func lookup(t *testing.T, tool, account string) (value string, found bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tool, "lookup", "service", keystore.KeyringService, "username", account)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return stdout.String(), true
	case errors.As(err, &exitErr) && stdout.Len() == 0 && stderr.Len() == 0:
		return "", false // secret-tool exits 1 silently when nothing matches
	default:
		t.Fatalf("secret-tool lookup: %v (stderr %q)", err, stderr.String())
		return "", false
	}
}

func TestKeyringRoundTrip(t *testing.T) {
	st := keyringOrSkip(t)
	tool := secretTool(t)
	if st.Name() != "keyring" {
		t.Fatalf("Name = %q", st.Name())
	}
	account := testAccount("roundtrip")
	cleanupAccount(t, st, account)

	conformance(t, st, account, func(want string) {
		t.Helper()
		got, found := lookup(t, tool, account)
		switch {
		case want == "" && found:
			t.Fatalf("secret-tool still finds the item after Delete")
		case want != "" && !found:
			t.Fatalf("secret-tool lookup service %s username %s finds nothing", keystore.KeyringService, account)
		case got != want:
			t.Fatalf("secret-tool lookup = %q, want %q", got, want)
		}
	})
}

// The item carries exactly the documented attributes.
func TestKeyringItemAttributes(t *testing.T) {
	st := keyringOrSkip(t)
	tool := secretTool(t)
	account := testAccount("attrs")
	cleanupAccount(t, st, account)
	if err := st.Set(context.Background(), account, keystore.NewSecret(canary())); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "search", "--all", "service", keystore.KeyringService, "username", account).CombinedOutput()
	if err != nil {
		t.Fatalf("secret-tool search: %v\n%s", err, out)
	}
	var attrs []string
	for line := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), " = "); ok && strings.HasPrefix(k, "attribute.") {
			attrs = append(attrs, strings.TrimPrefix(k, "attribute.")+"="+v)
		}
	}
	sort.Strings(attrs)
	want := []string{"service=" + keystore.KeyringService, "username=" + account}
	if fmt.Sprint(attrs) != fmt.Sprint(want) {
		t.Fatalf("item attributes = %v, want %v", attrs, want)
	}
	if !strings.Contains(string(out), "label = Password for '"+account+"' on 'tokenbroker'") {
		t.Errorf("unexpected label in:\n%s", out)
	}
}

// An item written by another Secret Service client with the documented
// attributes is read by the keyring backend.
func TestKeyringReadsSecretToolItem(t *testing.T) {
	st := keyringOrSkip(t)
	tool := secretTool(t)
	account := testAccount("secrettool")
	cleanupAccount(t, st, account)
	v := canary()
	cmd := exec.Command(tool, "store", "--label=tokenbroker test", "service", keystore.KeyringService, "username", account)
	cmd.Stdin = strings.NewReader(v) // never on argv
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("secret-tool store: %v\n%s", err, out)
	}
	got, err := st.Get(context.Background(), account)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Reveal() != v {
		t.Fatalf("Get = %q, want %q", got.Reveal(), v)
	}
	if err := st.Delete(context.Background(), account); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, found := lookup(t, tool, account); found {
		t.Fatal("secret-tool still finds the item after Delete")
	}
}

func TestKeyringNotFound(t *testing.T) {
	st := keyringOrSkip(t)
	account := testAccount("absent")
	_, err := st.Get(context.Background(), account)
	if !errors.Is(err, keystore.ErrNotFound) || errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Get: err = %v, want ErrNotFound only", err)
	}
	if !strings.Contains(err.Error(), account) || !strings.Contains(err.Error(), "keyring") {
		t.Errorf("error %q does not name the backend and account", err)
	}
}

// returns runs f and fails the test if it has not returned after a generous
// grace period: the point is that it returns, not how fast.
func returns[T any](t *testing.T, what string, f func() T) T {
	t.Helper()
	ch := make(chan T, 1)
	go func() { ch <- f() }()
	select {
	case v := <-ch:
		return v
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not return", what)
		panic("unreachable")
	}
}

// A call with an already expired context returns an error without waiting
// for the backend. This does not need a Secret Service.
func TestKeyringExpiredContext(t *testing.T) {
	st := keystore.NewKeyring(0)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err := returns(t, "Get with expired context", func() error {
		_, err := st.Get(ctx, testAccount("expired"))
		return err
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get: err = %v, want context.DeadlineExceeded", err)
	}
	err = returns(t, "Set with expired context", func() error {
		return st.Set(ctx, testAccount("expired"), keystore.NewSecret("x"))
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Set: err = %v, want context.DeadlineExceeded", err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	err = returns(t, "Delete with canceled context", func() error {
		return st.Delete(cctx, testAccount("canceled"))
	})
	if !errors.Is(err, context.Canceled) || errors.Is(err, keystore.ErrUnavailable) {
		t.Fatalf("Delete: err = %v, want context.Canceled, not ErrUnavailable", err)
	}
}

// Against the real Secret Service, a call whose deadline is shorter than a
// D-Bus round trip returns an error rather than hanging.
func TestKeyringShortDeadline(t *testing.T) {
	keyringOrSkip(t)
	account := testAccount("short")
	for _, tc := range []struct {
		name string
		st   keystore.Store
		ctx  func() (context.Context, context.CancelFunc)
	}{
		{"store timeout", keystore.NewKeyring(time.Nanosecond), func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}},
		{"ctx deadline", keystore.NewKeyring(0), func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Microsecond)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			err := returns(t, "Get", func() error {
				_, err := tc.st.Get(ctx, account)
				return err
			})
			// Depending on who wins the race: the deadline passed before the
			// call started (DeadlineExceeded), while it ran (ErrUnavailable and
			// DeadlineExceeded), or the backend answered first (ErrNotFound).
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, keystore.ErrNotFound) {
				t.Fatalf("Get: err = %v, want context.DeadlineExceeded (or ErrNotFound)", err)
			}
			if errors.Is(err, keystore.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("timeout error %v does not match context.DeadlineExceeded", err)
			}
			t.Log(err)
		})
	}
}

// A Secret Service that never answers (a D-Bus socket that accepts and then
// stays silent) makes every call fail with ErrUnavailable once the timeout
// passes, and blocked calls do not pile up. It runs in a child process
// because go-keyring shares one session-bus connection per process.
func TestKeyringHungBus(t *testing.T) {
	if os.Getenv("KEYSTORE_TEST_HUNG_BUS_CHILD") != "" {
		hungBusChild(t)
		return
	}
	sock := filepath.Join(t.TempDir(), "bus")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn // keep connections open and silent
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKeyringHungBus$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"KEYSTORE_TEST_HUNG_BUS_CHILD=1",
		"DBUS_SESSION_BUS_ADDRESS=unix:path="+sock,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("child output:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestKeyringHungBus")) {
		t.Fatal("child did not run the test")
	}
}

func hungBusChild(t *testing.T) {
	st := keystore.NewKeyring(200 * time.Millisecond)
	c := canary()
	const calls = 7 // more than the backend keeps blocked in the background
	for i := range calls {
		err := returns(t, "call against a hung bus", func() error {
			switch i % 3 {
			case 0:
				_, err := st.Get(context.Background(), "hung-app")
				return err
			case 1:
				return st.Set(context.Background(), "hung-app", keystore.NewSecret(c))
			default:
				return st.Delete(context.Background(), "hung-app")
			}
		})
		t.Logf("call %d: %v", i, err)
		if !errors.Is(err, keystore.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call %d: err = %v, want ErrUnavailable and DeadlineExceeded", i, err)
		}
		for _, want := range []string{"keyring", "hung-app", "Secret Service unavailable", "DBUS_SESSION_BUS_ADDRESS", "unlock"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("call %d: error %q does not mention %q", i, err, want)
			}
		}
		assertNoLeak(t, "hung bus error", err.Error(), c)
		if i >= 4 && !strings.Contains(err.Error(), "still blocked") {
			t.Errorf("call %d: error %q does not say earlier calls are still blocked", i, err)
		}
	}
}
