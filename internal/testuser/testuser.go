// Package testuser is for tests that act as a second local user: the
// unprivileged account they use, and the rule for a test that cannot run
// here. Such a test skips on a developer's machine, but fails when $CI is
// set: CI must never pass by skipping.
//
// It imports nothing of this module, so any package's tests may use it.
package testuser

import (
	"fmt"
	"os"
	"testing"
)

// Debian's unprivileged user nobody and its group nogroup.
const (
	Nobody  = 65534
	Nogroup = 65534
)

// SkipOrFail ends the test: it fails when $CI is set and skips otherwise.
// The message says why the test cannot run here.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if ci := os.Getenv("CI"); ci != "" {
		t.Fatalf("%s (CI=%q: this test must not skip in CI)", msg, ci)
	}
	t.Skipf("%s; skipping (set CI=true to make this a failure)", msg)
}

// RequireRoot ends the test by SkipOrFail unless it runs as root, which
// it needs to act as another user (chown, setuid); why says what for.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if uid := os.Geteuid(); uid != 0 {
		SkipOrFail(t, "running as uid %d: this test needs root to %s", uid, why)
	}
}
