package keystore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/tokenbroker/tokenbroker/internal/pathtrust"
)

// watchSettle is how long Watch lets a burst of directory events settle
// before it looks at the files: a Kubernetes rotation is four or five
// events (new timestamped directory, ..data_tmp, the rename over ..data,
// the removal of the old directory).
const watchSettle = 75 * time.Millisecond

// ErrInsecureFile means a credential file may be read or replaced by someone
// other than brokerd: it is not a regular file, is owned by another user, or
// its permissions let others (or a group brokerd does not run as) read it or
// anyone but its owner write it. The message names the file, its mode and
// owner and the chmod that fixes it.
var ErrInsecureFile = errors.New("credential file is not private to brokerd")

// fingerprint identifies one version of a file: a rename over it, a
// Kubernetes ..data swap, a write, a chmod or a chown all change it. The
// zero fingerprint stands for "no file".
type fingerprint struct {
	dev, ino    uint64
	size        int64
	mtime, ctim syscall.Timespec
}

func fingerprintOf(fi fs.FileInfo) fingerprint {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fingerprint{size: fi.Size(), mtime: syscall.NsecToTimespec(fi.ModTime().UnixNano())}
	}
	mtime, ctime := statTimes(st)
	return fingerprint{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: mtime, ctim: ctime}
}

type directoryStore struct {
	dir        string
	euid, egid int

	mu       sync.Mutex
	seen     map[string]fingerprint // account -> the file as Get last found it
	watching bool
}

// NewDirectory returns a read-only Store over a directory holding one file
// per account, named by the account (brokerd uses the app's client id): the
// layout of a Kubernetes Secret volume, of Docker secrets (/run/secrets) and
// of any directory an operator fills by hand. Get(account) reads the file
// with one trailing newline ("\n" or "\r\n") removed; the value may be up to
// 16 KiB. Set and Delete fail with an error matching ErrReadOnly that says how
// to provision the file.
//
// Symbolic links are followed, since a Kubernetes Secret volume is made of
// them (dir/<key> -> ..data/<key>, ..data -> ..<timestamp>), but the file
// actually opened must be private to brokerd or Get fails with an error
// matching ErrInsecureFile:
//
//   - it is a regular file owned by root or by brokerd's effective uid;
//   - nobody but the owner may write it, and others may not read it;
//   - the group may read it only if its group is brokerd's effective gid.
//     That is the layout Kubernetes gives a Secret volume with
//     securityContext.fsGroup set to brokerd's gid (files root:<fsGroup>,
//     mode 0440), the one way a non-root container can read a mounted
//     secret. A file readable by any other group is refused: its members
//     are not brokerd.
//
// The way to the file must be root's or brokerd's alone, as OpenSSH asks
// of an authorized_keys file (internal/pathtrust): every directory from /
// down owned by root or brokerd and not writable by group or others (a
// sticky one, such as a Kubernetes volume (1777), only above the directory
// that holds the file), and every symbolic link on the way owned by root or
// brokerd. So another user can neither plant a file or a link for a missing
// account, nor swap one between the check and the open: the file is opened
// by its resolved path, without following links.
//
// The store implements Watcher: Kubernetes replaces a mounted secret in place
// when the Secret changes, and Watch reports it without a restart.
//
// dir must be an existing directory owned by root or brokerd, under
// directories of root's or brokerd's, and must not be writable by group or
// others unless it has the sticky bit.
func NewDirectory(dir string) (Store, error) {
	if dir == "" {
		return nil, errors.New("keystore: directory backend: credentials_dir is not set: " +
			"set it to the directory that holds one file per app named by its client id (e.g. /run/secrets)")
	}
	dir = filepath.Clean(dir)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("keystore: directory backend: credentials_dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("keystore: directory backend: credentials_dir %s is not a directory", dir)
	}
	s := &directoryStore{dir: dir, euid: os.Geteuid(), egid: os.Getegid(), seen: make(map[string]fingerprint)}
	// Above, not Dir: a sticky volume directory may hold the files.
	if _, err := pathtrust.Above(dir, s.trust()); err != nil {
		return nil, fmt.Errorf("keystore: directory backend: %w: credentials_dir %s: others could replace the credentials in it: %v",
			ErrInsecureFile, dir, err)
	}
	return s, nil
}

// afterPathCheck runs between the check of the way to a file and its
// open; tests swap the file there, as another user could.
var afterPathCheck = func(resolved string) {}

// trust is whom the checks of the way to a file trust besides root.
func (s *directoryStore) trust() pathtrust.Policy {
	// SharedHolder: read checks the owner of what it opened (private).
	return pathtrust.Policy{Trusted: []uint32{uint32(s.euid)}, SharedHolder: true}
}

func (s *directoryStore) Name() string { return "directory" }

func (s *directoryStore) MaxSize() int { return MaxValueSize }

func (s *directoryStore) Get(ctx context.Context, account string) (Secret, error) {
	const op = "get"
	if err := checkAccount(s.Name(), op, account); err != nil {
		return Secret{}, err
	}
	if err := ctx.Err(); err != nil {
		return Secret{}, opError(s.Name(), op, account, err)
	}
	path := filepath.Join(s.dir, account)
	v, fp, err := s.read(path, account)
	s.mu.Lock()
	s.seen[account] = fp
	s.mu.Unlock()
	if err != nil {
		return Secret{}, opError(s.Name(), op, account, err)
	}
	return v, nil
}

// read opens path and returns its value and the fingerprint of the file it
// opened (zero when there is none).
func (s *directoryStore) read(path, account string) (Secret, fingerprint, error) {
	res, err := pathtrust.File(path, s.trust())
	var pe *pathtrust.Error
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// No file, or a link to nothing (a Kubernetes key mid-rotation).
		return Secret{}, fingerprint{}, fmt.Errorf("%w: no file %s; %s", ErrNotFound, path, s.provision(account))
	case errors.As(err, &pe):
		return Secret{}, fingerprint{}, fmt.Errorf("%w: %s: %v; the way to a credential file must be root's or brokerd's alone",
			ErrInsecureFile, path, err)
	case err != nil:
		return Secret{}, fingerprint{}, err
	}
	afterPathCheck(res.Resolved)
	// The resolved path, without following links: nothing on the way can
	// change since the check. O_NONBLOCK: a FIFO cannot hang the open; the
	// fstat below refuses it.
	f, err := os.OpenFile(res.Resolved, os.O_RDONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return Secret{}, fingerprint{}, fmt.Errorf("%w: no file %s; %s", ErrNotFound, path, s.provision(account))
	}
	if err != nil {
		return Secret{}, fingerprint{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Secret{}, fingerprint{}, err
	}
	fp := fingerprintOf(fi)
	if err := s.private(path, fi); err != nil {
		if res.Resolved != path {
			err = fmt.Errorf("%w (%s leads to %s)", err, path, res.Resolved)
		}
		return Secret{}, fp, err
	}
	v, err := readValue(f, path)
	return v, fp, err
}

// private returns an error matching ErrInsecureFile unless fi, the opened
// file at path, is a regular file only brokerd can read (see NewDirectory).
func (s *directoryStore) private(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file (%s); replace it with a file of mode 0400", ErrInsecureFile, path, fi.Mode().Type())
	}
	uid, gid := ownerOf(fi), groupOf(fi)
	perm := fi.Mode().Perm()
	var why string
	switch {
	case uid != 0 && uid != s.euid:
		why = fmt.Sprintf("it is owned by uid %d, not by root or brokerd (uid %d)", uid, s.euid)
	case perm&0o007 != 0:
		why = "others can access it"
	case perm&0o020 != 0:
		why = "its group can write it"
	case perm&0o040 != 0 && gid != s.egid:
		why = fmt.Sprintf("its group %d, which is not brokerd's (gid %d), can read it", gid, s.egid)
	case linksOf(fi) != 1:
		// Another user may have linked someone else's file here.
		why = fmt.Sprintf("it has %d hard links; a credential file has one name", linksOf(fi))
	default:
		return nil
	}
	return fmt.Errorf("%w: %s (mode %04o, owner %d:%d): %s; run `chmod 0400 %s` (and `chown %d %s` if brokerd runs as "+
		"another user); for a Kubernetes Secret volume set defaultMode: 0400, or 0440 with securityContext.fsGroup "+
		"and runAsGroup set to brokerd's gid (%d)",
		ErrInsecureFile, path, perm, uid, gid, why, path, s.euid, path, s.egid)
}

func linksOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 0
}

func ownerOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

func groupOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Gid)
	}
	return -1
}

// provision says how to put a credential in the directory.
func (s *directoryStore) provision(account string) string {
	return fmt.Sprintf("write the credential to %s (mode 0400), or mount a Kubernetes Secret with key %s "+
		"at %s, or pass a Docker secret named %s with --secret %s (it appears in /run/secrets)",
		filepath.Join(s.dir, account), account, s.dir, account, account)
}

func (s *directoryStore) Set(ctx context.Context, account string, _ Secret) error {
	if err := checkAccount(s.Name(), "set", account); err != nil {
		return err
	}
	return s.Writable(account)
}

// Writable always fails: the files are provisioned outside brokerd.
func (s *directoryStore) Writable(account string) error {
	return opError(s.Name(), "set", account, fmt.Errorf("%w: the directory backend only reads the files in %s; %s; "+
		"brokerd reads the file again when it changes (a Kubernetes Secret updated in place included)",
		ErrReadOnly, s.dir, s.provision(account)))
}

func (s *directoryStore) Delete(ctx context.Context, account string) error {
	if err := checkAccount(s.Name(), "delete", account); err != nil {
		return err
	}
	return opError(s.Name(), "delete", account, fmt.Errorf("%w: the directory backend only reads the files in %s; "+
		"remove %s (or the key from the Kubernetes Secret, or the Docker secret from the service) and restart brokerd",
		ErrReadOnly, s.dir, filepath.Join(s.dir, account)))
}

// Watch implements Watcher with inotify (through fsnotify) on the directory
// itself. After each burst of events in it, it looks at (stat, following
// symbolic links) every account Get has been asked for, and calls changed for
// each whose file is not the one Get last found: replaced, rewritten,
// chmodded, removed, or appeared where there was none. Each change is
// reported once. Events that arrive while it looks are queued and start
// another look, so none is lost. changed runs on Watch's goroutine.
//
// Only changes to entries of the directory are seen: a file a symbolic link
// points at outside it can change unnoticed until something in the
// directory changes (Kubernetes and Docker keep everything inside). A Docker
// secret does not change during a container's life.
//
// If inotify is unavailable (no inotify in the kernel or sandbox, or the
// per-user limit fs.inotify.max_user_instances or max_user_watches is
// reached), Watch returns an error at once and the store works without
// notifications: Get still reads the file on every call, so a rotated file
// is used as soon as brokerd reads the credential again, at the latest on
// restart. Watch also returns an error if the directory itself is removed
// or replaced, and at once if another Watch of the store is running.
func (s *directoryStore) Watch(ctx context.Context, changed func(account string)) error {
	s.mu.Lock()
	if s.watching {
		s.mu.Unlock()
		return fmt.Errorf("keystore: directory backend: %s is already being watched", s.dir)
	}
	s.watching = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.watching = false
		s.mu.Unlock()
	}()

	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("keystore: directory backend: cannot watch %s for changes: inotify: %w; "+
			"a rotated credential is used when brokerd next reads it or restarts (raise fs.inotify.max_user_instances "+
			"if the limit is reached)", s.dir, err)
	}
	defer w.Close()
	if err := w.Add(s.dir); err != nil {
		return fmt.Errorf("keystore: directory backend: cannot watch %s for changes: inotify: %w; "+
			"a rotated credential is used when brokerd next reads it or restarts (raise fs.inotify.max_user_watches "+
			"if the limit is reached)", s.dir, err)
	}
	// A change between Get and the Add above has no event: look once now.
	s.report(changed)

	var settle <-chan time.Time // running while a burst of events settles
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return fmt.Errorf("keystore: directory backend: watch of %s ended", s.dir)
			}
			if filepath.Clean(ev.Name) == s.dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				s.report(changed)
				return fmt.Errorf("keystore: directory backend: %s was removed or renamed; "+
					"changes to credentials are no longer noticed until brokerd restarts", s.dir)
			}
		case _, ok := <-w.Errors:
			// An error (an event queue overflow) means events may have been
			// lost: look at every file. The value names no file.
			if !ok {
				return fmt.Errorf("keystore: directory backend: watch of %s ended", s.dir)
			}
		case <-settle:
			settle = nil
			s.report(changed)
			continue
		}
		if settle == nil {
			settle = time.After(watchSettle)
		}
	}
}

// report calls changed for every account whose file is not the one last
// recorded, and records the file as it is now.
func (s *directoryStore) report(changed func(account string)) {
	s.mu.Lock()
	accounts := make([]string, 0, len(s.seen))
	for a := range s.seen {
		accounts = append(accounts, a)
	}
	s.mu.Unlock()
	for _, a := range accounts {
		var now fingerprint
		if fi, err := os.Stat(filepath.Join(s.dir, a)); err == nil {
			now = fingerprintOf(fi)
		}
		s.mu.Lock()
		was := s.seen[a]
		s.seen[a] = now
		s.mu.Unlock()
		if was != now {
			changed(a)
		}
	}
}

var _ Watcher = (*directoryStore)(nil)
