package keystore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tokenbroker/tokenbroker/internal/testuser"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// maxFile is the directory backend's documented size bound (16 KiB).
const maxFile = 16 << 10

func newDirectory(t *testing.T, dir string) keystore.Store {
	t.Helper()
	st, err := keystore.NewDirectory(dir)
	if err != nil {
		t.Fatalf("NewDirectory(%s): %v", dir, err)
	}
	return st
}

// writeFile writes content to path with exactly mode perm.
func writeFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil { // past the umask
		t.Fatal(err)
	}
}

// kubeVolume lays out dir the way the kubelet's AtomicWriter fills a Secret
// volume: the files in a timestamped directory, ..data pointing at it, and
// one symbolic link per key through ..data. The volume directory itself is
// world-writable and sticky, as a Kubernetes tmpfs volume is.
type kubeVolume struct {
	t    *testing.T
	dir  string
	mode os.FileMode // of the files (defaultMode)
	gen  int
	ts   string // current timestamped directory
}

func newKubeVolume(t *testing.T, mode os.FileMode, data map[string]string) *kubeVolume {
	v := &kubeVolume{t: t, dir: t.TempDir(), mode: mode}
	if err := os.Chmod(v.dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	v.update(data)
	return v
}

// update writes a new generation and swaps it in as the kubelet does:
// new timestamped directory, ..data_tmp -> it, rename over ..data, then
// the per-key links for new keys and removal of the old directory.
func (v *kubeVolume) update(data map[string]string) {
	t := v.t
	t.Helper()
	v.gen++
	ts := fmt.Sprintf("..2026_11_28_21_00_%02d.%09d", v.gen, 123456789)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for k, val := range data {
		writeFile(t, filepath.Join(v.dir, ts, k), val, v.mode)
	}
	if err := os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for k := range data {
		link := filepath.Join(v.dir, k)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(v.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, keep := data[e.Name()]; !keep && !strings.HasPrefix(e.Name(), "..") {
			if err := os.Remove(filepath.Join(v.dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v.ts != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, v.ts)); err != nil {
			t.Fatal(err)
		}
	}
	v.ts = ts
}

// watch runs st.Watch until the test ends and collects what it reports.
type watch struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
	mu     sync.Mutex
	got    []string
	signal chan struct{}
}

func startWatch(t *testing.T, st keystore.Store) *watch {
	t.Helper()
	wr, ok := st.(keystore.Watcher)
	if !ok {
		t.Fatalf("the %s store does not implement Watcher", st.Name())
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watch{t: t, cancel: cancel, done: make(chan error, 1), signal: make(chan struct{}, 1)}
	started := make(chan struct{})
	go func() {
		close(started)
		w.done <- wr.Watch(ctx, func(account string) {
			w.mu.Lock()
			w.got = append(w.got, account)
			w.mu.Unlock()
			select {
			case w.signal <- struct{}{}:
			default:
			}
		})
	}()
	<-started
	t.Cleanup(func() { w.stop() })
	return w
}

// waitFor waits until account has been reported. The bound only keeps a
// broken watch from hanging the test; nothing here depends on how fast
// the report comes.
func (w *watch) waitFor(account string) {
	w.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		w.mu.Lock()
		seen := slices.Contains(w.got, account)
		w.mu.Unlock()
		if seen {
			return
		}
		select {
		case <-w.signal:
		case err := <-w.done:
			w.t.Fatalf("Watch returned (%v) before reporting %q", err, account)
		case <-deadline:
			w.t.Fatalf("Watch did not report %q; reports so far: %q", account, w.reports())
		}
	}
}

func (w *watch) reports() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// stop ends the watch and returns what Watch returned (nil if stopped
// before).
func (w *watch) stop() error {
	if w.cancel == nil {
		return nil
	}
	w.cancel()
	w.cancel = nil
	return <-w.done
}

// settle makes sure a watch is in place, so that a change the test makes
// next reaches it as an event (not through its first look): it creates a
// file for an account Get found missing and waits for the report, then
// removes the file again.
func (w *watch) settle(st keystore.Store, dir string) {
	w.t.Helper()
	probe := filepath.Join(dir, "probe")
	if _, err := st.Get(context.Background(), "probe"); !errors.Is(err, keystore.ErrNotFound) {
		w.t.Fatalf("Get(probe): %v", err)
	}
	writeFile(w.t, probe, "p", 0o400)
	w.waitFor("probe")
	if err := os.Remove(probe); err != nil {
		w.t.Fatal(err)
	}
}

func getValue(t *testing.T, st keystore.Store, account string) string {
	t.Helper()
	s, err := st.Get(context.Background(), account)
	if err != nil {
		t.Fatalf("Get(%s): %v", account, err)
	}
	return s.Reveal()
}

func TestDirectoryReads(t *testing.T) {
	dir := t.TempDir()
	st, err := keystore.Open("directory", keystore.Options{Dir: dir})
	if err != nil {
		t.Fatalf("Open(directory): %v", err)
	}
	if st.Name() != "directory" {
		t.Fatalf("Name = %q", st.Name())
	}
	c := canary()
	pem := "-----BEGIN CERTIFICATE-----\n" + strings.Repeat("A", 3000) + "\n-----END CERTIFICATE-----\n"
	for _, tc := range []struct{ file, content, want string }{
		{"plain", c, c},
		{"newline", c + "\n", c},
		{"crlf", c + "\r\n", c},
		{"two-newlines", c + "\n\n", c + "\n"},
		{"pem", pem, strings.TrimSuffix(pem, "\n")},
		{"11111111-2222-3333-4444-555555555555", c + "\n", c},
		{"max", strings.Repeat("m", maxFile) + "\n", strings.Repeat("m", maxFile)},
	} {
		writeFile(t, filepath.Join(dir, tc.file), tc.content, 0o400)
		if got := getValue(t, st, tc.file); got != tc.want {
			t.Errorf("Get(%q) = %q, want %q", tc.file, got, tc.want)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o440} { // 0440: group is ours (egid)
		writeFile(t, filepath.Join(dir, "m"), c, mode)
		if err := os.Chown(filepath.Join(dir, "m"), -1, os.Getegid()); err != nil {
			t.Fatal(err)
		}
		if got := getValue(t, st, "m"); got != c {
			t.Errorf("Get of a %04o file = %q", mode, got)
		}
	}
}

func TestDirectoryConstructor(t *testing.T) {
	for _, o := range []keystore.Options{{}, {CredentialsDir: t.TempDir()}} {
		_, err := keystore.Open("directory", o)
		if err == nil || !strings.Contains(err.Error(), "credentials_dir") {
			t.Errorf("Open(directory, %+v): err = %v, want one naming credentials_dir", o, err)
		}
	}
	if _, err := keystore.NewDirectory(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("NewDirectory of a missing directory succeeded")
	}
	f := filepath.Join(t.TempDir(), "file")
	writeFile(t, f, "x", 0o400)
	if _, err := keystore.NewDirectory(f); err == nil {
		t.Error("NewDirectory of a file succeeded")
	}
	// Anyone could swap the files of a world-writable directory; with the
	// sticky bit (a Kubernetes volume) only their owner can.
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := keystore.NewDirectory(open)
	if !errors.Is(err, keystore.ErrInsecureFile) || !strings.Contains(err.Error(), "chmod go-w "+open) {
		t.Errorf("NewDirectory of a 0777 directory: err = %v, want ErrInsecureFile with the chmod", err)
	}
	if err := os.Chmod(open, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	newDirectory(t, open)
}

func TestDirectoryErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newDirectory(t, dir)

	_, err := st.Get(ctx, "missing-app")
	if !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Get(missing): err = %v, want ErrNotFound", err)
	}
	for _, want := range []string{"directory", filepath.Join(dir, "missing-app"), "Kubernetes Secret", "--secret missing-app"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("not-found error %q does not mention %q", err, want)
		}
	}
	if err := os.Symlink("..data/gone", filepath.Join(dir, "dangling")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "dangling"); !errors.Is(err, keystore.ErrNotFound) {
		t.Errorf("Get of a dangling link: err = %v, want ErrNotFound", err)
	}

	writeFile(t, filepath.Join(dir, "empty"), "\n", 0o400)
	if _, err := st.Get(ctx, "empty"); !errors.Is(err, keystore.ErrInvalidSecret) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Get(empty): err = %v, want ErrInvalidSecret saying empty", err)
	}

	big := canary() + strings.Repeat("x", maxFile)
	writeFile(t, filepath.Join(dir, "big"), big, 0o400)
	_, err = st.Get(ctx, "big")
	if !errors.Is(err, keystore.ErrInvalidSecret) || !strings.Contains(err.Error(), "16384") {
		t.Fatalf("Get(big): err = %v, want ErrInvalidSecret stating the limit", err)
	}
	assertNoLeak(t, "oversized file error", err.Error(), big[:40])

	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "subdir"); !errors.Is(err, keystore.ErrInsecureFile) {
		t.Errorf("Get of a directory: err = %v, want ErrInsecureFile", err)
	}
	// A FIFO would block a plain open forever; it is refused at once.
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "fifo"); !errors.Is(err, keystore.ErrInsecureFile) || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Get of a FIFO: err = %v, want ErrInsecureFile", err)
	}

	for _, bad := range []string{"..", ".", "", "a/b", "../" + filepath.Base(dir), "..data/x"} {
		if _, err := st.Get(ctx, bad); !errors.Is(err, keystore.ErrInvalidAccount) {
			t.Errorf("Get(%q): err = %v, want ErrInvalidAccount", bad, err)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	writeFile(t, filepath.Join(dir, "present"), "x", 0o400)
	if _, err := st.Get(cctx, "present"); !errors.Is(err, context.Canceled) {
		t.Errorf("Get with canceled ctx: %v", err)
	}
}

// A file others (or a group brokerd is not in) can read, or anyone but its
// owner can write, is refused with the fix, and the message never holds
// the value.
func TestDirectoryRefusesSharedFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newDirectory(t, dir)
	path := filepath.Join(dir, "app")
	c := canary()

	refused := func(what string, wants ...string) {
		t.Helper()
		s, err := st.Get(ctx, "app")
		if !errors.Is(err, keystore.ErrInsecureFile) {
			t.Errorf("Get of %s: (%d bytes, %v), want ErrInsecureFile", what, len(s.Reveal()), err)
			return
		}
		for _, want := range append([]string{path, "chmod 0400 " + path, "defaultMode: 0400", "fsGroup"}, wants...) {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error for %s %q does not mention %q", what, err, want)
			}
		}
		assertNoLeak(t, "error for "+what, err.Error(), c)
	}

	writeFile(t, path, c, 0o644)
	refused("a 0644 file", "mode 0644", "others can access it")
	writeFile(t, path, c, 0o604)
	refused("a 0604 file", "mode 0604")
	writeFile(t, path, c, 0o420)
	refused("a group-writable file", "mode 0420", "group can write")
	writeFile(t, path, c, 0o460)
	refused("a group-writable 0460 file", "group can write")

	writeFile(t, path, c, 0o400)
	if got := getValue(t, st, "app"); got != c {
		t.Fatalf("Get of the 0400 file = %q", got)
	}
}

// The group may read the file only if it is brokerd's group; ownership by
// anyone but root or brokerd is refused. Needs root to chown.
func TestDirectoryRefusesForeignOwners(t *testing.T) {
	testuser.RequireRoot(t, "chown files to another user and group")
	ctx := context.Background()
	dir := t.TempDir()
	st := newDirectory(t, dir)
	path := filepath.Join(dir, "app")
	c := canary()

	check := func(what string, perm os.FileMode, uid, gid int, wants ...string) {
		t.Helper()
		writeFile(t, path, c, perm)
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
		_, err := st.Get(ctx, "app")
		if !errors.Is(err, keystore.ErrInsecureFile) {
			t.Errorf("Get of %s: err = %v, want ErrInsecureFile", what, err)
			return
		}
		for _, want := range wants {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error for %s %q does not mention %q", what, err, want)
			}
		}
		assertNoLeak(t, "error for "+what, err.Error(), c)
	}
	check("a 0640 file of a foreign group", 0o640, 0, testuser.Nogroup,
		fmt.Sprintf("owner 0:%d", testuser.Nogroup), "mode 0640", "not brokerd's", "chmod 0400 "+path)
	check("a 0440 file of a foreign group", 0o440, 0, testuser.Nogroup, "not brokerd's")
	check("a file owned by nobody", 0o400, testuser.Nobody, 0,
		fmt.Sprintf("owned by uid %d", testuser.Nobody), fmt.Sprintf("owner %d:0", testuser.Nobody), "chown 0 "+path)

	// The same 0440 file is accepted once its group is brokerd's.
	writeFile(t, path, c, 0o440)
	if err := os.Chown(path, 0, os.Getegid()); err != nil {
		t.Fatal(err)
	}
	if got := getValue(t, st, "app"); got != c {
		t.Fatalf("Get of a 0440 file of brokerd's group = %q", got)
	}

	// A link planted by another user (in a sticky volume directory anyone
	// may add entries) is refused even when it leads to a private file.
	target := filepath.Join(t.TempDir(), "root-only")
	writeFile(t, target, c, 0o400)
	link := filepath.Join(dir, "planted")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(link, testuser.Nobody, testuser.Nogroup); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "planted"); !errors.Is(err, keystore.ErrInsecureFile) || !strings.Contains(err.Error(), "owner uid 65534 (nobody)") {
		t.Errorf("Get through a link of nobody's: err = %v, want ErrInsecureFile", err)
	}
}

// Links are followed wherever they lead (a Kubernetes volume is made of
// them), and the file they lead to must still be private.
func TestDirectoryFollowsLinks(t *testing.T) {
	dir := t.TempDir()
	st := newDirectory(t, dir)
	target := filepath.Join(t.TempDir(), "elsewhere")
	c := canary()
	writeFile(t, target, c+"\n", 0o400)
	if err := os.Symlink(target, filepath.Join(dir, "app")); err != nil {
		t.Fatal(err)
	}
	if got := getValue(t, st, "app"); got != c {
		t.Fatalf("Get through a link out of the directory = %q", got)
	}
	if err := os.Chmod(target, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := st.Get(context.Background(), "app")
	if !errors.Is(err, keystore.ErrInsecureFile) || !strings.Contains(err.Error(), "leads to "+target) {
		t.Fatalf("Get through a link to a 0644 file: err = %v, want ErrInsecureFile naming the target", err)
	}
	assertNoLeak(t, "error for a linked 0644 file", err.Error(), c)
}

func TestDirectoryReadOnly(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := newDirectory(t, dir)
	c := canary()
	writeFile(t, filepath.Join(dir, "app"), "old\n", 0o400)

	err := st.Set(ctx, "app", keystore.NewSecret(c))
	if !errors.Is(err, keystore.ErrReadOnly) {
		t.Fatalf("Set: err = %v, want ErrReadOnly", err)
	}
	for _, want := range []string{"read-only", filepath.Join(dir, "app"), "mode 0400", "Kubernetes Secret", "--secret app", "/run/secrets"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Set error %q does not mention %q", err, want)
		}
	}
	assertNoLeak(t, "Set error", err.Error(), c)
	if w := st.Writable("app"); !errors.Is(w, keystore.ErrReadOnly) || w.Error() != err.Error() {
		t.Errorf("Writable = %v, want the error Set gives: %v", w, err)
	}
	err = st.Delete(ctx, "app")
	if !errors.Is(err, keystore.ErrReadOnly) || !strings.Contains(err.Error(), "remove "+filepath.Join(dir, "app")) {
		t.Fatalf("Delete: err = %v, want ErrReadOnly saying what to remove", err)
	}
	if got := getValue(t, st, "app"); got != "old" {
		t.Fatalf("credential changed by Set/Delete: %q", got)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("read-only backend wrote to its directory: %v", entries)
	}
}

// A Kubernetes Secret updated in place (the ..data swap) is read by the next
// Get and reported by Watch, for every key, and a key the update drops is
// reported as well; accounts never read are not reported.
func TestDirectoryKubernetesRotation(t *testing.T) {
	v1, other := canary(), canary()
	vol := newKubeVolume(t, 0o400, map[string]string{"app": v1 + "\n", "other": other})
	st := newDirectory(t, vol.dir)
	if got := getValue(t, st, "app"); got != v1 {
		t.Fatalf("Get(app) = %q", got)
	}
	if got := getValue(t, st, "other"); got != other {
		t.Fatalf("Get(other) = %q", got)
	}
	w := startWatch(t, st)
	w.settle(st, vol.dir)

	v2 := canary()
	vol.update(map[string]string{"app": v2 + "\n"})
	w.waitFor("app")
	w.waitFor("other") // its key was dropped
	if got := getValue(t, st, "app"); got != v2 {
		t.Fatalf("Get(app) after the rotation = %q, want the new value", got)
	}
	if _, err := st.Get(context.Background(), "other"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("Get(other) after its key was dropped: %v", err)
	}

	// A second rotation is reported again.
	v3 := canary()
	vol.update(map[string]string{"app": v3})
	for count(w.reports(), "app") < 2 {
		w.waitForNext()
	}
	if got := getValue(t, st, "app"); got != v3 {
		t.Fatalf("Get(app) after the second rotation = %q", got)
	}
	if err := w.stop(); err != nil {
		t.Fatalf("Watch returned %v when its context ended, want nil", err)
	}
	for _, a := range w.reports() {
		if a != "app" && a != "other" && a != "probe" {
			t.Errorf("Watch reported %q, which no Get asked for", a)
		}
	}
}

func count(list []string, s string) int {
	n := 0
	for _, e := range list {
		if e == s {
			n++
		}
	}
	return n
}

// waitForNext waits for one more report.
func (w *watch) waitForNext() {
	w.t.Helper()
	select {
	case <-w.signal:
	case err := <-w.done:
		w.t.Fatalf("Watch returned (%v) while a report was due", err)
	case <-time.After(20 * time.Second):
		w.t.Fatalf("no further report from Watch; reports so far: %q", w.reports())
	}
}

// Docker secrets and hand-filled directories: a file replaced by rename,
// removed, or created where there was none is reported; a file nobody
// touched is not.
func TestDirectoryPlainFileRotation(t *testing.T) {
	dir := t.TempDir()
	st := newDirectory(t, dir)
	v1, steady := canary(), canary()
	writeFile(t, filepath.Join(dir, "app"), v1, 0o400)
	writeFile(t, filepath.Join(dir, "steady"), steady, 0o400)
	getValue(t, st, "app")
	getValue(t, st, "steady")
	if _, err := st.Get(context.Background(), "later"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatal(err)
	}
	w := startWatch(t, st)
	w.settle(st, dir)

	v2 := canary()
	writeFile(t, filepath.Join(dir, ".app.tmp"), v2+"\n", 0o400)
	if err := os.Rename(filepath.Join(dir, ".app.tmp"), filepath.Join(dir, "app")); err != nil {
		t.Fatal(err)
	}
	w.waitFor("app")
	if got := getValue(t, st, "app"); got != v2 {
		t.Fatalf("Get(app) after the rename = %q, want the new value", got)
	}

	writeFile(t, filepath.Join(dir, "later"), canary(), 0o400)
	w.waitFor("later")
	if err := os.Remove(filepath.Join(dir, "app")); err != nil {
		t.Fatal(err)
	}
	for count(w.reports(), "app") < 2 {
		w.waitForNext()
	}
	if err := w.stop(); err != nil {
		t.Fatalf("Watch returned %v when its context ended, want nil", err)
	}
	if slices.Contains(w.reports(), "steady") {
		t.Errorf("Watch reported an untouched file: %q", w.reports())
	}
}

// Watch returns nil when its context ends and leaves no goroutine behind;
// a second Watch of the same store is refused; the removal of the
// directory ends Watch with an error.
//
// Not parallel: goleak looks at every goroutine of the process.
func TestDirectoryWatchEnds(t *testing.T) {
	before := goleak.IgnoreCurrent()
	dir := t.TempDir()
	st := newDirectory(t, dir)
	writeFile(t, filepath.Join(dir, "app"), "x", 0o400)
	getValue(t, st, "app")

	w := startWatch(t, st)
	w.settle(st, dir)
	err := st.(keystore.Watcher).Watch(context.Background(), func(string) {})
	if err == nil || !strings.Contains(err.Error(), "already being watched") {
		t.Errorf("a second Watch: err = %v, want already being watched", err)
	}
	if err := w.stop(); err != nil {
		t.Fatalf("Watch returned %v when its context ended, want nil", err)
	}
	goleak.VerifyNone(t, before)

	// The store can be watched again, and a removed directory ends it.
	w = startWatch(t, st)
	w.settle(st, dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.done:
		w.cancel = nil
		if err == nil || !strings.Contains(err.Error(), "removed") {
			t.Errorf("Watch after its directory was removed returned %v, want an error saying so", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Watch did not return when its directory was removed")
	}
	if !slices.Contains(w.reports(), "app") {
		t.Errorf("the removal of the directory did not report app: %q", w.reports())
	}
	goleak.VerifyNone(t, before)
}

// A file replaced after Get and before Watch starts has no event for Watch
// to see; Watch reports it from its first look.
func TestDirectoryWatchSeesEarlierChange(t *testing.T) {
	dir := t.TempDir()
	st := newDirectory(t, dir)
	writeFile(t, filepath.Join(dir, "app"), canary(), 0o400)
	getValue(t, st, "app")
	writeFile(t, filepath.Join(dir, "new"), canary(), 0o400)
	if err := os.Rename(filepath.Join(dir, "new"), filepath.Join(dir, "app")); err != nil {
		t.Fatal(err)
	}
	w := startWatch(t, st)
	w.waitFor("app")
}

// Another user cannot take the way to a credential: a credentials_dir of
// theirs, or under a directory they can write, is refused at once; in a
// shared sticky volume they cannot link one of root's files under an
// account's name (their link is refused, and so is a second hard link to
// root's file); and a name they swap from a file to a link of theirs after
// the check never gets brokerd to read what the link leads to.
func TestDirectoryWayToTheFile(t *testing.T) {
	testuser.RequireRoot(t, "chown directories and links to another user")
	ctx := context.Background()

	theirs := t.TempDir()
	if err := os.Chown(theirs, testuser.Nobody, testuser.Nogroup); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.NewDirectory(theirs); !errors.Is(err, keystore.ErrInsecureFile) || !strings.Contains(err.Error(), "uid 65534") {
		t.Errorf("NewDirectory of nobody's directory: %v, want ErrInsecureFile naming its owner", err)
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	below := filepath.Join(open, "creds")
	if err := os.Mkdir(below, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := keystore.NewDirectory(below); !errors.Is(err, keystore.ErrInsecureFile) || !strings.Contains(err.Error(), "chmod go-w "+open) {
		t.Errorf("NewDirectory under a 0777 directory: %v, want ErrInsecureFile with the chmod", err)
	}

	vol := t.TempDir()
	if err := os.Chmod(vol, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	st := newDirectory(t, vol)
	rootFile := filepath.Join(t.TempDir(), "root-only")
	writeFile(t, rootFile, canary(), 0o400)
	hard := filepath.Join(vol, "hardlinked")
	if err := os.Link(rootFile, hard); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "hardlinked"); !errors.Is(err, keystore.ErrInsecureFile) || !strings.Contains(err.Error(), "2 hard links") {
		t.Errorf("Get of a second hard link to root's file: %v, want ErrInsecureFile", err)
	}

	// The swap: the name is nobody's own file when it is checked, and
	// nobody's link to root's file when it is opened.
	name := filepath.Join(vol, "swapped")
	writeFile(t, name, "nobody's own value", 0o400)
	rootFile = filepath.Join(t.TempDir(), "root-only") // one name only
	writeFile(t, rootFile, canary(), 0o400)
	if err := os.Lchown(name, testuser.Nobody, testuser.Nogroup); err != nil {
		t.Fatal(err)
	}
	restore := keystore.SetAfterPathCheck(func(string) {
		link := name + ".link"
		if err := os.Symlink(rootFile, link); err != nil {
			t.Error(err)
		}
		if err := os.Lchown(link, testuser.Nobody, testuser.Nogroup); err != nil {
			t.Error(err)
		}
		if err := os.Rename(link, name); err != nil {
			t.Error(err)
		}
	})
	defer restore()
	if v, err := st.Get(ctx, "swapped"); err == nil {
		t.Fatalf("brokerd read a value of %d bytes through another user's swap", len(v.Reveal()))
	}
}
