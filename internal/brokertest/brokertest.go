// Package brokertest holds what tokenbroker's tests share: a fake Entra ID
// with an app and consented tenants and the configuration that points at
// it (World), a keystore whose calls a test can hold (Store), short
// directories for Unix sockets, a log buffer, and polling for a condition.
//
// It is imported by tests only. Fakes stop at the edges a test cannot
// reach for real (a Secret Service that hangs on cue); everything else
// the tests use is the real thing.
package brokertest

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond every 10 ms until it holds, and fails the test if it
// does not within 30 seconds. It is for conditions a real process or a
// real network reaches in its own time; tests on the fake clock settle the
// broker instead.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ShortDir returns a new directory under /tmp whose path is short enough
// for Unix sockets (108 bytes at most), removed when the test ends.
// t.TempDir's paths, which carry the test name, can be too long.
func ShortDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// LogBuffer collects writes from many goroutines at once, for tests that
// capture a logger's or a process's output and search it (for audit lines,
// or for leaked secrets and tokens). The zero value is ready to use.
type LogBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (s *LogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *LogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// DebugLogger is a text logger at debug level into w, so that tests can
// search everything the code under test logs.
func DebugLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Goroutines returns the stacks of the goroutines that a function of the
// package with import path pkg started (not those that merely call into
// it, as a test's own goroutines do). A goroutine whose stack is down to the one function
// it was started with is returning (it has done its last deferred call,
// such as telling a WaitGroup it is done) and is not counted. A test that
// has stopped a component calls it at once, without retries: whatever it
// finds outlived the stop.
func Goroutines(pkg string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 || !strings.Contains(g, "\ncreated by "+pkg+".") {
			continue
		}
		frames := 0
		for _, line := range strings.Split(g, "\n")[1:] {
			if line != "" && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "created by ") {
				frames++
			}
		}
		if frames > 1 {
			found = append(found, g)
		}
	}
	return found
}
