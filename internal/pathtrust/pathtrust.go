// Package pathtrust decides whether a path is under the control of trusted
// users only, the way OpenSSH's secure_path judges an authorized_keys file:
// brokerd checks the socket it listens on and the configuration it reads,
// and the client checks the socket it is about to send a secret over.
//
// A path is trusted when nobody outside the trusted uids (root is always
// one) could have put, or could replace, what it names:
//
//   - every directory from / down to the one that holds the target is owned
//     by root or a trusted uid and not writable by group or others;
//   - a sticky directory writable by others (/tmp, /var/tmp) is accepted as
//     an ancestor, since others cannot rename or remove what a trusted user
//     keeps in it, but never as the directory that holds the target, where
//     anyone could have created the name first;
//   - a symbolic link on the way (Debian's /var/run -> /run) must itself be
//     owned by root or a trusted uid, and its target is checked the same
//     way, up to maxLinks links;
//   - a file whose content matters (Policy.PrivateTarget) is owned by root
//     or a trusted uid and not writable by group or others.
//
// With Policy.ProtectedOwner, the directory that holds the target may also
// belong to any uid U when every directory and link above it belongs to
// root and is not writable by group or others: only root could have made
// it, so it stands for a service account root set up (systemd's
// RuntimeDirectory=, such as /run/brokerd owned by user brokerd). The
// result names U so that a caller may accept what U serves.
//
// Every refusal is an *Error whose message is one line naming the offending
// path, its owner and mode, and the command that would fix it.
package pathtrust

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// maxLinks bounds the symbolic links one check follows, as the kernel's
// own limit (40) does for a path lookup.
const maxLinks = 40

// Policy says whom a check trusts and what it asks of the target.
type Policy struct {
	// Trusted are the uids besides root that may own the directories,
	// links and target.
	Trusted []uint32
	// ProtectedOwner accepts any owner for the directory that holds the
	// target when everything above it is root's and not writable by
	// group or others (see the package comment).
	ProtectedOwner bool
	// PrivateTarget is for a target whose content matters (a
	// configuration file): it must be owned by root or a trusted uid and
	// not writable by group or others. A socket leaves it unset: its owner
	// and mode say who may connect, not who may replace it (its directory
	// decides that), and who serves it is for SO_PEERCRED to tell. The
	// system service's socket, bound by systemd with SocketUser=brokerd in
	// root's /run/brokerd, is owned by brokerd.
	PrivateTarget bool
	// SharedHolder accepts a sticky directory writable by others (a
	// Kubernetes Secret volume is 1777) as the one that holds the target,
	// for a caller that opens the target without following links and then
	// checks that what it opened is owned by root or a trusted uid: others
	// can put names into such a directory but cannot replace what a
	// trusted user keeps there, and a link on the way is trusted-owned.
	SharedHolder bool
}

// Result is what a check that passed learned about the path.
type Result struct {
	// Resolved is the path with every symbolic link followed.
	Resolved string
	// DirOwner is the owner of the directory that holds the target.
	DirOwner uint32
	// Protected is true when that directory was accepted only by the
	// ProtectedOwner rule: DirOwner is then trusted for this path.
	Protected bool
}

// Error is a refusal: the path that failed the check and why.
type Error struct {
	Kind    string      // "directory", "symbolic link" or "" (the target)
	Path    string      // the directory, link or target that failed
	UID     uint32      // its owner
	Mode    fs.FileMode // its mode
	Problem string      // what is wrong, e.g. "is writable by group or others"
	Fix     string      // the command that would fix it
}

func (e *Error) Error() string {
	what := e.Path
	if e.Kind != "" {
		what = e.Kind + " " + e.Path
	}
	return fmt.Sprintf("%s (owner %s, mode %s) %s: %s", what, DescribeUID(e.UID), octal(e.Mode), e.Problem, e.Fix)
}

// File checks a file or socket path: the directories above it, any link on
// the way, and the target itself, which must exist. It never follows a
// link it has not checked.
func File(path string, p Policy) (Result, error) {
	return walk(path, &walker{p: p})
}

// Dir checks a directory meant to hold a socket or file: the directories
// above it, any link on the way, and the directory itself, held to the
// rules for the directory that holds a target.
func Dir(path string, p Policy) (Result, error) {
	return walk(path, &walker{p: p, dirMode: true})
}

// Above checks an existing directory that a new directory of the caller's
// is about to be made in: as Dir, except that a shared sticky directory
// (/tmp) passes, as it does above a target, since others can neither
// rename nor remove what the caller makes in it. The new directory itself
// is to be checked with Dir once it exists.
func Above(path string, p Policy) (Result, error) {
	return walk(path, &walker{p: p, dirMode: true, above: true})
}

// walker is the state of one check.
type walker struct {
	p       Policy
	dirMode bool // the target is a directory (Dir, Above)
	above   bool // the target directory is only an ancestor (Above)
	links   int
	// rootOnly: everything visited so far is owned by root and not
	// writable by group or others (the ProtectedOwner precondition).
	rootOnly bool
	res      Result
}

func walk(path string, w *walker) (Result, error) {
	if path == "" {
		return Result{}, errors.New("empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Result{}, err
	}
	w.rootOnly = true
	cur := "/"
	todo := split(abs)
	if err := w.checkRoot(w.holds(todo)); err != nil {
		return Result{}, err
	}
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if name == ".." {
			if len(todo) == 0 {
				return Result{}, fmt.Errorf("%s: the path ends in \"..\"", path)
			}
			// An ancestor already checked, but perhaps only as an
			// ancestor: if it now holds the target, it must pass as the
			// holder (a shared sticky directory does not).
			cur = filepath.Dir(cur)
			if w.holds(todo) {
				fi, err := os.Lstat(cur)
				if err != nil {
					return Result{}, err
				}
				if err := w.checkDir(cur, fi, true); err != nil {
					return Result{}, err
				}
			}
			continue
		}
		next := filepath.Join(cur, name)
		fi, err := os.Lstat(next)
		if err != nil {
			return Result{}, err
		}
		last := len(todo) == 0
		if fi.Mode().Type() == fs.ModeSymlink {
			if err := w.checkLink(next, fi); err != nil {
				return Result{}, err
			}
			target, err := os.Readlink(next)
			if err != nil {
				return Result{}, err
			}
			todo = append(split(target), todo...)
			if filepath.IsAbs(target) {
				cur = "/"
			}
			continue
		}
		switch {
		case last && !w.dirMode:
			if err := w.checkTarget(next, fi); err != nil {
				return Result{}, err
			}
		case !fi.IsDir():
			return Result{}, fmt.Errorf("%s is not a directory", next)
		default:
			if err := w.checkDir(next, fi, last || w.holds(todo)); err != nil {
				return Result{}, err
			}
		}
		cur = next
	}
	w.res.Resolved = cur
	return w.res, nil
}

// holds reports whether the directory just reached holds the target: the
// names left to walk are the target's alone (Dir: none are left, and the
// directory is the target itself). A link among them may move the target
// elsewhere; the directory that then holds it is checked as such too.
func (w *walker) holds(todo []string) bool {
	if w.dirMode {
		return len(todo) == 0
	}
	return len(todo) == 1 && todo[0] != ".."
}

// checkRoot checks "/", the first directory of every path.
func (w *walker) checkRoot(holder bool) error {
	fi, err := os.Lstat("/")
	if err != nil {
		return err
	}
	return w.checkDir("/", fi, holder)
}

// checkDir checks one directory; holder says it holds the target (or is
// the target, for Dir), where a sticky directory is not enough and the
// ProtectedOwner rule may apply.
func (w *walker) checkDir(path string, fi fs.FileInfo, holder bool) error {
	uid := owner(fi)
	writable := fi.Mode().Perm()&0o022 != 0
	sticky := fi.Mode()&fs.ModeSticky != 0
	if !w.trusted(uid) {
		if !(holder && w.p.ProtectedOwner && w.rootOnly) {
			return &Error{Kind: "directory", Path: path, UID: uid, Mode: fi.Mode(),
				Problem: "is not owned by " + w.trustedText(), Fix: "chown root " + path}
		}
		if writable {
			return &Error{Kind: "directory", Path: path, UID: uid, Mode: fi.Mode(),
				Problem: "is writable by group or others", Fix: "chmod go-w " + path}
		}
		w.res.Protected = true
	}
	if writable {
		switch {
		case !sticky:
			return &Error{Kind: "directory", Path: path, UID: uid, Mode: fi.Mode(),
				Problem: "is writable by group or others", Fix: "chmod go-w " + path}
		case holder && !w.above && !w.p.SharedHolder:
			return &Error{Kind: "directory", Path: path, UID: uid, Mode: fi.Mode(),
				Problem: "is shared (sticky and writable by others), so anyone may have taken the name first",
				Fix:     "use a directory of its own inside it (mode 0700 or 0755)"}
		}
	}
	if uid != 0 || writable {
		w.rootOnly = false
	}
	if holder {
		w.res.DirOwner = uid
	}
	return nil
}

// checkLink checks a symbolic link; the directory that holds it has passed.
func (w *walker) checkLink(path string, fi fs.FileInfo) error {
	w.links++
	if w.links > maxLinks {
		return fmt.Errorf("%s: more than %d symbolic links", path, maxLinks)
	}
	uid := owner(fi)
	if !w.trusted(uid) {
		return &Error{Kind: "symbolic link", Path: path, UID: uid, Mode: fi.Mode(),
			Problem: "is not owned by " + w.trustedText(), Fix: "use the real path instead, or chown -h root " + path}
	}
	if uid != 0 {
		w.rootOnly = false
	}
	return nil
}

// checkTarget checks the file itself, when its content matters.
func (w *walker) checkTarget(path string, fi fs.FileInfo) error {
	if !w.p.PrivateTarget {
		return nil
	}
	uid := owner(fi)
	if !w.trusted(uid) && !(w.res.Protected && uid == w.res.DirOwner) {
		return &Error{Path: path, UID: uid, Mode: fi.Mode(),
			Problem: "is not owned by " + w.trustedText(), Fix: "chown root " + path}
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return &Error{Path: path, UID: uid, Mode: fi.Mode(), Problem: "is writable by group or others",
			Fix: "chmod go-w " + path}
	}
	return nil
}

func (w *walker) trusted(uid uint32) bool {
	return uid == 0 || slices.Contains(w.p.Trusted, uid)
}

// trustedText names the trusted owners, e.g. "root or uid 1000 (alice)".
func (w *walker) trustedText() string {
	parts := []string{"root"}
	for _, u := range w.p.Trusted {
		if u != 0 && !slices.Contains(parts[1:], DescribeUID(u)) {
			parts = append(parts, DescribeUID(u))
		}
	}
	return strings.Join(parts, " or ")
}

// split returns the names in path, without empty and "." ones.
func split(path string) []string {
	var names []string
	for _, n := range strings.Split(path, "/") {
		if n != "" && n != "." {
			names = append(names, n)
		}
	}
	return names
}

func owner(fi fs.FileInfo) uint32 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Uid
	}
	// Not on Linux: nothing to go by; treat as nobody trusted.
	return ^uint32(0)
}

// DescribeUID names a uid for a message: "uid 65534 (nobody)", or "uid
// 4242" when no user has it.
func DescribeUID(uid uint32) string {
	id := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(id); err == nil && u.Username != "" {
		return "uid " + id + " (" + u.Username + ")"
	}
	return "uid " + id
}

// LookupUID resolves a uid given as a number or a user name.
func LookupUID(s string) (uint32, error) {
	if s == "" {
		return 0, errors.New("empty user")
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if n == 1<<32-1 {
			return 0, fmt.Errorf("%s is not a uid (it means \"no uid\" to the kernel)", s)
		}
		return uint32(n), nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, fmt.Errorf("no user %q on this system (give a user name or a numeric uid)", s)
	}
	n, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("user %q has uid %q", s, u.Uid)
	}
	return uint32(n), nil
}

// octal prints a mode as chmod takes it, with the sticky, setgid and setuid
// bits: 1777, 0755.
func octal(m fs.FileMode) string {
	v := uint32(m.Perm())
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	return fmt.Sprintf("%04o", v)
}
