package keystore_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// canary returns a unique secret value that is easy to find in any output.
func canary() string { return "CANARY-" + rand.Text() }

// assertNoLeak fails if out contains value in any common encoding.
func assertNoLeak(t *testing.T, what, out, value string) {
	t.Helper()
	for _, enc := range []string{
		value,
		hex.EncodeToString([]byte(value)),
		strings.ToUpper(hex.EncodeToString([]byte(value))),
		base64.StdEncoding.EncodeToString([]byte(value)),
		base64.RawURLEncoding.EncodeToString([]byte(value)),
	} {
		if strings.Contains(out, enc) {
			t.Errorf("%s leaks the secret: %q", what, out)
			return
		}
	}
}

// conformance exercises a read-write Store with one account: Set, Get,
// overwrite, Delete, Get -> ErrNotFound, plus the input checks. after, if not
// nil, is called with the value the store should now hold ("" after Delete),
// to cross-check with an outside reader.
func conformance(t *testing.T, st keystore.Store, account string, after func(want string)) {
	t.Helper()
	ctx := context.Background()
	check := func(want string) {
		t.Helper()
		if after != nil {
			after(want)
		}
	}

	if _, err := st.Get(ctx, account); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Get before Set: err = %v, want ErrNotFound", err)
	}
	if err := st.Writable(account); err != nil {
		t.Fatalf("Writable of a store that takes secrets: %v", err)
	}
	if err := st.Delete(ctx, account); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Delete before Set: err = %v, want ErrNotFound", err)
	}

	first := canary()
	if err := st.Set(ctx, account, keystore.NewSecret(first)); err != nil {
		t.Fatalf("Set: %v", err)
	}
	got, err := st.Get(ctx, account)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.Reveal() != first {
		t.Fatalf("Get = %q, want the value just set", got.Reveal())
	}
	check(first)

	second := canary() + " with spaces, ünïcode and \"quotes\""
	if err := st.Set(ctx, account, keystore.NewSecret(second)); err != nil {
		t.Fatalf("Set (overwrite): %v", err)
	}
	got, err = st.Get(ctx, account)
	if err != nil {
		t.Fatalf("Get after overwrite: %v", err)
	}
	if got.Reveal() != second {
		t.Fatalf("Get after overwrite = %q, want the new value", got.Reveal())
	}
	check(second)

	// Largest allowed secret round-trips.
	largest := strings.Repeat("m", keystore.MaxValueSize)
	if err := st.Set(ctx, account, keystore.NewSecret(largest)); err != nil {
		t.Fatalf("Set of MaxValueSize bytes: %v", err)
	}
	if got, err = st.Get(ctx, account); err != nil || got.Reveal() != largest {
		t.Fatalf("Get of MaxValueSize bytes: len %d, err %v", len(got.Reveal()), err)
	}

	// Rejected secrets: the error says why, never what, and the stored value
	// is unchanged.
	big := canary() + strings.Repeat("x", keystore.MaxValueSize)
	err = st.Set(ctx, account, keystore.NewSecret(big))
	if !errors.Is(err, keystore.ErrInvalidSecret) {
		t.Fatalf("Set of %d bytes: err = %v, want ErrInvalidSecret", len(big), err)
	}
	assertNoLeak(t, "oversized Set error", err.Error(), big[:40])
	if !strings.Contains(err.Error(), strconv.Itoa(st.MaxSize())) {
		t.Errorf("oversized Set error does not state the limit: %v", err)
	}
	for _, empty := range []keystore.Secret{{}, keystore.NewSecret("")} {
		if err := st.Set(ctx, account, empty); !errors.Is(err, keystore.ErrInvalidSecret) {
			t.Fatalf("Set of empty secret: err = %v, want ErrInvalidSecret", err)
		}
	}
	if got, err = st.Get(ctx, account); err != nil || got.Reveal() != largest {
		t.Fatalf("rejected Set changed the stored value (len %d, err %v)", len(got.Reveal()), err)
	}

	if err := st.Delete(ctx, account); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := st.Get(ctx, account); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Get after Delete: err = %v, want ErrNotFound", err)
	}
	if err := st.Delete(ctx, account); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("second Delete: err = %v, want ErrNotFound", err)
	}
	check("")

	// Unusable account names are refused before the backend is touched.
	for _, bad := range []string{"", ".", "..", "a/b", "../etc/passwd", `a\b`, "a\x00b", "a\nb", "\xff", strings.Repeat("a", 256)} {
		if _, err := st.Get(ctx, bad); !errors.Is(err, keystore.ErrInvalidAccount) {
			t.Errorf("Get(%q): err = %v, want ErrInvalidAccount", bad, err)
		}
		if err := st.Set(ctx, bad, keystore.NewSecret("x")); !errors.Is(err, keystore.ErrInvalidAccount) {
			t.Errorf("Set(%q): err = %v, want ErrInvalidAccount", bad, err)
		}
		if err := st.Delete(ctx, bad); !errors.Is(err, keystore.ErrInvalidAccount) {
			t.Errorf("Delete(%q): err = %v, want ErrInvalidAccount", bad, err)
		}
	}
}
