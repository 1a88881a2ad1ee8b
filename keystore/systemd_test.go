package keystore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/keystore"
)

func writeCred(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o400); err != nil {
		t.Fatal(err)
	}
}

func TestSystemdReads(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	st, err := keystore.NewSystemd("")
	if err != nil {
		t.Fatalf("NewSystemd with $CREDENTIALS_DIRECTORY set: %v", err)
	}
	if st.Name() != "systemd" {
		t.Fatalf("Name = %q", st.Name())
	}
	c := canary()
	for _, tc := range []struct{ file, content, want string }{
		{"plain", c, c},
		{"newline", c + "\n", c},
		{"crlf", c + "\r\n", c},
		{"two-newlines", c + "\n\n", c + "\n"},
		{"inner-newline", "a\nb\n", "a\nb"},
		{"spaces", "  " + c + "  \n", "  " + c + "  "},
		{"11111111-2222-3333-4444-555555555555", c + "\n", c},
		{"max", strings.Repeat("m", keystore.MaxValueSize) + "\n", strings.Repeat("m", keystore.MaxValueSize)},
	} {
		writeCred(t, dir, tc.file, tc.content)
		got, err := st.Get(context.Background(), tc.file)
		if err != nil {
			t.Errorf("Get(%q): %v", tc.file, err)
			continue
		}
		if got.Reveal() != tc.want {
			t.Errorf("Get(%q) = %q, want %q", tc.file, got.Reveal(), tc.want)
		}
	}
}

func TestSystemdErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := keystore.NewSystemd(dir)
	if err != nil {
		t.Fatal(err)
	}

	_, err = st.Get(ctx, "missing-app")
	if !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Get(missing): err = %v, want ErrNotFound", err)
	}
	for _, want := range []string{"systemd", "missing-app", "LoadCredentialEncrypted="} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("not-found error %q does not mention %q", err, want)
		}
	}

	writeCred(t, dir, "empty", "")
	writeCred(t, dir, "only-newline", "\n")
	for _, name := range []string{"empty", "only-newline"} {
		if _, err := st.Get(ctx, name); !errors.Is(err, keystore.ErrInvalidSecret) || !strings.Contains(err.Error(), "empty") {
			t.Errorf("Get(%s): err = %v, want ErrInvalidSecret saying empty", name, err)
		}
	}

	big := canary() + strings.Repeat("x", keystore.MaxValueSize)
	writeCred(t, dir, "big", big)
	_, err = st.Get(ctx, "big")
	if !errors.Is(err, keystore.ErrInvalidSecret) {
		t.Fatalf("Get(big): err = %v, want ErrInvalidSecret", err)
	}
	assertNoLeak(t, "oversized credential error", err.Error(), big[:40])

	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "subdir"); err == nil {
		t.Error("Get of a directory succeeded")
	}

	// Path traversal is refused: a secret outside the credentials directory
	// cannot be read through it.
	outside := filepath.Join(filepath.Dir(dir), "outside-"+filepath.Base(dir))
	writeCred(t, filepath.Dir(outside), filepath.Base(outside), "x")
	t.Cleanup(func() { os.Remove(outside) })
	for _, bad := range []string{"../" + filepath.Base(outside), "..", ".", "", "a/b", outside} {
		if _, err := st.Get(ctx, bad); !errors.Is(err, keystore.ErrInvalidAccount) {
			t.Errorf("Get(%q): err = %v, want ErrInvalidAccount", bad, err)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	writeCred(t, dir, "present", "x")
	if _, err := st.Get(cctx, "present"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with canceled ctx: %v", err)
	}
}

func TestSystemdReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := keystore.NewSystemd(dir)
	if err != nil {
		t.Fatal(err)
	}
	c := canary()
	writeCred(t, dir, "app", "old\n")

	err = st.Set(ctx, "app", keystore.NewSecret(c))
	if !errors.Is(err, keystore.ErrReadOnly) {
		t.Fatalf("Set: err = %v, want ErrReadOnly", err)
	}
	for _, want := range []string{"read-only", "systemd-creds encrypt", "LoadCredentialEncrypted=app"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Set error %q does not mention %q", err, want)
		}
	}
	assertNoLeak(t, "Set error", err.Error(), c)
	if w := st.Writable("app"); !errors.Is(w, keystore.ErrReadOnly) || w.Error() != err.Error() {
		t.Errorf("Writable = %v, want the error Set gives: %v", w, err)
	}

	err = st.Delete(ctx, "app")
	if !errors.Is(err, keystore.ErrReadOnly) {
		t.Fatalf("Delete: err = %v, want ErrReadOnly", err)
	}
	if got, err := st.Get(ctx, "app"); err != nil || got.Reveal() != "old" {
		t.Fatalf("credential changed by Set/Delete: %q, %v", got.Reveal(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("read-only backend wrote to its directory: %v", entries)
	}
}

func TestSystemdConstructor(t *testing.T) {
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	os.Unsetenv("CREDENTIALS_DIRECTORY")
	_, err := keystore.NewSystemd("")
	if err == nil {
		t.Fatal("NewSystemd(\"\") without CREDENTIALS_DIRECTORY succeeded")
	}
	for _, want := range []string{"CREDENTIALS_DIRECTORY", "LoadCredential"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := keystore.NewSystemd(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("NewSystemd of a missing directory succeeded")
	}
	f := filepath.Join(t.TempDir(), "file")
	writeCred(t, filepath.Dir(f), "file", "x")
	if _, err := keystore.NewSystemd(f); err == nil {
		t.Fatal("NewSystemd of a file succeeded")
	}
}
