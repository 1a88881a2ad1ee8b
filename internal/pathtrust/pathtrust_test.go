package pathtrust

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/testuser"
)

const nobody = testuser.Nobody

// tree builds directories and files under a new directory in parent,
// removed when the test ends.
type tree struct {
	t    *testing.T
	base string
}

func newTree(t *testing.T, parent string) *tree {
	t.Helper()
	base, err := os.MkdirTemp(parent, "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	return &tree{t: t, base: base}
}

// dir makes base/rel with mode and owner uid.
func (tr *tree) dir(rel string, mode os.FileMode, uid int) string {
	tr.t.Helper()
	p := filepath.Join(tr.base, rel)
	if err := os.Mkdir(p, 0o700); err != nil {
		tr.t.Fatal(err)
	}
	tr.own(p, mode, uid)
	return p
}

// file makes base/rel with mode and owner uid.
func (tr *tree) file(rel string, mode os.FileMode, uid int) string {
	tr.t.Helper()
	p := filepath.Join(tr.base, rel)
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		tr.t.Fatal(err)
	}
	tr.own(p, mode, uid)
	return p
}

// link makes base/rel a symbolic link to target, owned by uid.
func (tr *tree) link(rel, target string, uid int) string {
	tr.t.Helper()
	p := filepath.Join(tr.base, rel)
	if err := os.Symlink(target, p); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Lchown(p, uid, -1); err != nil {
		tr.t.Fatal(err)
	}
	return p
}

func (tr *tree) own(p string, mode os.FileMode, uid int) {
	tr.t.Helper()
	if err := os.Chown(p, uid, -1); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // after chown, which clears setuid bits
		tr.t.Fatal(err)
	}
}

var (
	rootOnly  = Policy{}
	private   = Policy{PrivateTarget: true}
	protected = Policy{ProtectedOwner: true}
)

// wantRefused checks that err is an *Error about path whose one-line
// message holds every one of subs.
func wantRefused(t *testing.T, err error, path string, subs ...string) {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a refusal of %s", err, path)
	}
	if pe.Path != path {
		t.Errorf("refused %s, want %s (%v)", pe.Path, path, err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("message is not one line: %q", msg)
	}
	for _, s := range subs {
		if !strings.Contains(msg, s) {
			t.Errorf("message %q lacks %q", msg, s)
		}
	}
}

// mustPass returns a function that fails the test when the check it is
// given refused, and returns the check's Result.
func mustPass(t *testing.T) func(Result, error) Result {
	return func(r Result, err error) Result {
		t.Helper()
		if err != nil {
			t.Fatalf("refused: %v", err)
		}
		return r
	}
}

func TestStickyDirectories(t *testing.T) {
	testuser.RequireRoot(t, "chown files to a second user")
	tr := newTree(t, "")
	sticky := tr.dir("sticky", 0o777|os.ModeSticky, 0)
	own := tr.dir("sticky/own", 0o700, 0)
	f := tr.file("sticky/own/f", 0o600, 0)
	mustPass(t)(File(f, private))
	mustPass(t)(Dir(own, rootOnly))

	// Directly in the sticky directory: anyone could have made the name.
	squat := tr.file("sticky/f", 0o600, 0)
	wantRefused(t, fileErr(File(squat, rootOnly)), sticky, "directory "+sticky, "mode 1777", "sticky", "a directory of its own")
	wantRefused(t, fileErr(Dir(sticky, rootOnly)), sticky, "sticky")
	// A caller that checks the owner of what it opens may let a sticky
	// volume hold the file (SharedHolder); a link on the way must still
	// be trusted.
	shared := Policy{SharedHolder: true}
	mustPass(t)(File(squat, shared))
	link := filepath.Join(sticky, "link")
	if err := os.Symlink(squat, link); err != nil {
		t.Fatal(err)
	}
	mustPass(t)(File(link, shared))
	if err := os.Lchown(link, int(nobody), int(nobody)); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, fileErr(File(link, shared)), link, "symbolic link "+link, "chown -h root")
	// A directory of one's own may be made in it, though.
	mustPass(t)(Above(sticky, rootOnly))
	// Above holds the rest of the way to the same rules as Dir.
	open := tr.dir("open", 0o777, 0)
	wantRefused(t, fileErr(Above(open, rootOnly)), open, "chmod go-w")
	theirs := tr.dir("theirs", 0o755, nobody)
	wantRefused(t, fileErr(Above(theirs, rootOnly)), theirs, "chown root")
}

func TestWritableDirectories(t *testing.T) {
	testuser.RequireRoot(t, "chown files to a second user")
	tr := newTree(t, "")
	gw := tr.dir("gw", 0o775, 0)
	f := tr.file("gw/f", 0o600, 0)
	wantRefused(t, fileErr(File(f, rootOnly)), gw, "mode 0775", "writable by group or others", "chmod go-w "+gw)

	// An other-writable ancestor without the sticky bit: anyone may rename
	// the private directory below it away.
	ow := tr.dir("ow", 0o777, 0)
	tr.dir("ow/sub", 0o700, 0)
	f = tr.file("ow/sub/f", 0o600, 0)
	wantRefused(t, fileErr(File(f, rootOnly)), ow, "mode 0777", "chmod go-w "+ow)
	wantRefused(t, fileErr(Dir(filepath.Join(ow, "sub"), rootOnly)), ow, "chmod go-w")
}

func TestForeignOwner(t *testing.T) {
	testuser.RequireRoot(t, "chown files to a second user")
	tr := newTree(t, "")
	nb := tr.dir("nb", 0o700, nobody)
	f := tr.file("nb/f", 0o600, 0)
	wantRefused(t, fileErr(File(f, rootOnly)), nb, "owner uid 65534 (nobody)", "is not owned by root", "chown root "+nb)
	// Trusted explicitly, nobody's directory passes; its target must be
	// owned by a trusted uid too.
	mustPass(t)(File(f, Policy{Trusted: []uint32{nobody}, PrivateTarget: true}))
	g := tr.file("nb/g", 0o600, 4242)
	wantRefused(t, fileErr(File(g, Policy{Trusted: []uint32{nobody}, PrivateTarget: true})), g, "owner uid 4242,", "not owned by root or uid 65534 (nobody)")
}

func TestPrivateTarget(t *testing.T) {
	testuser.RequireRoot(t, "chown files to a second user")
	tr := newTree(t, "")
	tr.dir("d", 0o755, 0)
	ok := tr.file("d/ok", 0o644, 0)
	mustPass(t)(File(ok, private))
	open := tr.file("d/open", 0o666, 0)
	wantRefused(t, fileErr(File(open, private)), open, "mode 0666", "writable by group or others", "chmod go-w "+open)
	theirs := tr.file("d/theirs", 0o600, nobody)
	wantRefused(t, fileErr(File(theirs, private)), theirs, "owner uid 65534 (nobody)", "chown root "+theirs)
	// A socket's owner and mode say who may connect, not who may replace
	// it: systemd binds the system service's socket for User=brokerd.
	mustPass(t)(File(open, rootOnly))
	mustPass(t)(File(theirs, rootOnly))
}

func TestSymlinks(t *testing.T) {
	testuser.RequireRoot(t, "chown files to a second user")
	tr := newTree(t, "")
	real := tr.dir("real", 0o755, 0)
	f := tr.file("real/f", 0o600, 0)

	// A root-owned link (like /var/run -> /run) is followed.
	abs := tr.link("abs", real, 0)
	r := mustPass(t)(File(filepath.Join(abs, "f"), private))
	if r.Resolved != f {
		t.Errorf("resolved %s, want %s", r.Resolved, f)
	}
	rel := tr.link("rel", "real", 0)
	if r := mustPass(t)(Dir(rel, rootOnly)); r.Resolved != real {
		t.Errorf("resolved %s, want %s", r.Resolved, real)
	}
	final := tr.link("final", "real/f", 0)
	if r := mustPass(t)(File(final, private)); r.Resolved != f {
		t.Errorf("resolved %s, want %s", r.Resolved, f)
	}

	// A link another user owns is refused, wherever it points.
	theirs := tr.link("theirs", real, nobody)
	wantRefused(t, fileErr(File(filepath.Join(theirs, "f"), rootOnly)), theirs, "symbolic link "+theirs, "owner uid 65534 (nobody)", "use the real path")

	// A trusted link into a directory that fails is refused at that
	// directory.
	gw := tr.dir("gw", 0o777, 0)
	tr.file("gw/f", 0o600, 0)
	toGW := tr.link("to-gw", "gw", 0)
	wantRefused(t, fileErr(File(filepath.Join(toGW, "f"), rootOnly)), gw, "chmod go-w")
	up := tr.link("real/up", "../gw/f", 0)
	wantRefused(t, fileErr(File(up, rootOnly)), gw, "chmod go-w")

	// A link in a shared sticky directory can be anyone's: refused as the
	// target's name, accepted as a root-owned ancestor.
	sticky := tr.dir("sticky", 0o777|os.ModeSticky, 0)
	tr.link("sticky/f", f, 0)
	wantRefused(t, fileErr(File(filepath.Join(sticky, "f"), rootOnly)), sticky, "sticky")
	via := tr.link("sticky/dir", real, 0)
	mustPass(t)(File(filepath.Join(via, "f"), rootOnly))
	// A trusted link whose ".." climbs back into the shared directory
	// makes it the target's holder again: refused as such.
	tr.dir("sticky/own", 0o755, 0)
	tr.file("sticky/f2", 0o600, 0)
	back := tr.link("sticky/own/l", "../f2", 0)
	wantRefused(t, fileErr(File(back, rootOnly)), sticky, "sticky")

	// A loop ends.
	tr.link("loop", "loop", 0)
	if _, err := File(filepath.Join(tr.base, "loop", "f"), rootOnly); err == nil || !strings.Contains(err.Error(), "symbolic links") {
		t.Errorf("a link loop: %v", err)
	}
}

// The directory holding the target may be a service account's when only
// root could have made it.
func TestProtectedOwner(t *testing.T) {
	testuser.RequireRoot(t, "chown files to a second user")
	// /run is root's and 0755; /tmp is sticky and writable by others.
	tr := newTree(t, "/run")
	if err := os.Chmod(tr.base, 0o755); err != nil {
		t.Fatal(err)
	}
	svc := tr.dir("svc", 0o750, nobody)
	sock := tr.file("svc/s", 0o660, nobody)
	r := mustPass(t)(File(sock, protected))
	if !r.Protected || r.DirOwner != nobody {
		t.Errorf("result %+v, want Protected with DirOwner %d", r, nobody)
	}
	if r := mustPass(t)(Dir(svc, protected)); !r.Protected || r.DirOwner != nobody {
		t.Errorf("Dir result %+v", r)
	}
	wantRefused(t, fileErr(File(sock, rootOnly)), svc, "owner uid 65534 (nobody)")

	// The service account's own directory must not be writable by others.
	open := tr.dir("open", 0o777, nobody)
	tr.file("open/s", 0o600, nobody)
	wantRefused(t, fileErr(File(filepath.Join(open, "s"), protected)), open, "chmod go-w")

	// The rule covers only the directory that holds the target.
	deep := tr.dir("deep", 0o755, nobody)
	tr.dir("deep/svc", 0o700, nobody)
	tr.file("deep/svc/s", 0o600, nobody)
	wantRefused(t, fileErr(File(filepath.Join(deep, "svc", "s"), protected)), deep, "owner uid 65534 (nobody)")

	// Under a sticky ancestor, anyone could have made the directory.
	tmp := newTree(t, "")
	nb := tmp.dir("svc", 0o750, nobody)
	tmp.file("svc/s", 0o600, nobody)
	wantRefused(t, fileErr(File(filepath.Join(nb, "s"), protected)), nb, "owner uid 65534 (nobody)")

	// A file of a third user in the protected directory is refused.
	other := tr.file("svc/other", 0o600, 4242)
	wantRefused(t, fileErr(File(other, Policy{ProtectedOwner: true, PrivateTarget: true})), other, "owner uid 4242")
}

func TestMissingTarget(t *testing.T) {
	testuser.RequireRoot(t, "chown files to a second user")
	tr := newTree(t, "")
	if _, err := File(filepath.Join(tr.base, "none"), rootOnly); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing target: %v, want not exist", err)
	}
	tr.file("f", 0o600, 0)
	if _, err := File(filepath.Join(tr.base, "f", "x"), rootOnly); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as a directory: %v", err)
	}
}

func TestLookupUID(t *testing.T) {
	for in, want := range map[string]uint32{"0": 0, "65534": nobody, "nobody": nobody, "root": 0} {
		if got, err := LookupUID(in); err != nil || got != want {
			t.Errorf("LookupUID(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "no-such-user-q", "-1", "4294967296", "4294967295"} {
		if _, err := LookupUID(bad); err == nil {
			t.Errorf("LookupUID(%q) succeeded", bad)
		}
	}
	if got := DescribeUID(nobody); got != "uid 65534 (nobody)" {
		t.Errorf("DescribeUID = %q", got)
	}
	if got := DescribeUID(4242); got != "uid 4242" {
		t.Errorf("DescribeUID(4242) = %q", got)
	}
}

// fileErr drops the Result of a check.
func fileErr(_ Result, err error) error { return err }
