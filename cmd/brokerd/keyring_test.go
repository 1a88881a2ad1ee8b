package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// secretService is a private D-Bus session bus with a gnome-keyring of its
// own, which a test can take away, lock and hang without touching the
// Secret Service the other tests share.
type secretService struct {
	t       *testing.T
	dir     string
	addr    string // DBUS_SESSION_BUS_ADDRESS
	bus     *exec.Cmd
	keyring *exec.Cmd
}

// newSecretService prepares a Secret Service at an address nothing listens
// on yet; up starts it.
func newSecretService(t *testing.T) *secretService {
	t.Helper()
	for _, tool := range []string{"dbus-daemon", "gnome-keyring-daemon", "secret-tool", "dbus-send"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (apt-get install dbus gnome-keyring libsecret-tools)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "ss")
	if err != nil {
		t.Fatal(err)
	}
	ss := &secretService{t: t, dir: dir, addr: "unix:path=" + filepath.Join(dir, "bus")}
	t.Cleanup(func() {
		ss.down()
		os.RemoveAll(dir)
	})
	return ss
}

func (ss *secretService) env() []string {
	return []string{"DBUS_SESSION_BUS_ADDRESS=" + ss.addr, "XDG_DATA_HOME=" + filepath.Join(ss.dir, "data"),
		"XDG_RUNTIME_DIR=" + ss.dir, "HOME=" + ss.dir}
}

// run runs a tool on the private bus and returns its stdout.
func (ss *secretService) run(stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(childEnv(), ss.env()...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.Output()
	return string(out), err
}

// up starts the bus and an unlocked login keyring on it.
func (ss *secretService) up() {
	t := ss.t
	t.Helper()
	ss.bus = exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--address="+ss.addr)
	ss.bus.Env = append(childEnv(), ss.env()...)
	if err := ss.bus.Start(); err != nil {
		t.Fatalf("dbus-daemon: %v", err)
	}
	brokertest.WaitFor(t, "the private session bus", func() bool {
		_, err := os.Stat(filepath.Join(ss.dir, "bus"))
		return err == nil
	})
	ss.startKeyring()
}

// startKeyring starts gnome-keyring-daemon in the foreground, unlocking
// the login keyring with a throwaway password. A daemon already running
// is stopped first: starting afresh is how a locked keyring gets unlocked
// here, as there is no prompt without a display.
func (ss *secretService) startKeyring() {
	t := ss.t
	t.Helper()
	if old := ss.keyring; old != nil {
		_ = old.Process.Kill()
		_ = old.Wait()
	}
	k := exec.Command("gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets")
	k.Env = append(childEnv(), ss.env()...)
	k.Stdin = strings.NewReader("pw")
	if err := k.Start(); err != nil {
		t.Fatalf("gnome-keyring-daemon: %v", err)
	}
	ss.keyring = k
	brokertest.WaitFor(t, "gnome-keyring on the private bus", func() bool {
		_, err := ss.run("", "secret-tool", "search", "service", "tokenbroker-none")
		return err == nil
	})
}

// lock locks the login collection, as a screen lock or a timeout does.
func (ss *secretService) lock() {
	ss.t.Helper()
	if out, err := ss.run("", "dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.secrets", "/org/freedesktop/secrets",
		"org.freedesktop.Secret.Service.Lock", "array:objpath:/org/freedesktop/secrets/collection/login"); err != nil {
		ss.t.Fatalf("locking the login collection: %v: %s", err, out)
	}
}

// signal sends sig to gnome-keyring-daemon: SIGSTOP hangs it.
func (ss *secretService) signal(sig syscall.Signal) {
	ss.t.Helper()
	if err := ss.keyring.Process.Signal(sig); err != nil {
		ss.t.Fatalf("signalling gnome-keyring-daemon: %v", err)
	}
}

func (ss *secretService) down() {
	for _, c := range []*exec.Cmd{ss.keyring, ss.bus} {
		if c != nil && c.Process != nil {
			_ = c.Process.Signal(syscall.SIGCONT)
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
}

// lookup returns what secret-tool finds for the app's item, and whether
// there is one.
func (ss *secretService) lookup(clientID string) (string, bool) {
	out, err := ss.run("", "secret-tool", "lookup", "service", "tokenbroker", "username", clientID)
	return out, err == nil
}

// A keyring that is missing, locked or hung: brokerd stays up, says what
// is wrong and how to fix it within the keystore timeout, keeps serving
// the tokens it has, and reads the credential again once the keyring
// answers.
func TestKeyringTrouble(t *testing.T) {
	t.Parallel()
	ss := newSecretService(t)
	s := newSession(t)
	clientID := fmt.Sprintf("%08x-0000-4000-8000-%012x", mrand.Uint32(), mrand.Uint64()&0xffffffffffff)
	w := newConfigWorld(t, s, "keyring", clientID)
	w.write(t, `keystore_timeout = "1s"`)
	w.env = append(w.env, ss.env()...)

	// No session bus at all: nothing listens at DBUS_SESSION_BUS_ADDRESS.
	p := w.start(s)
	s.ctl("", "get", "--tenant", "northwind").wantExit(t, 6, "brokerctl: Unavailable: ",
		"cannot read the credential of app partner", "Secret Service unavailable", "DBUS_SESSION_BUS_ADDRESS", "systemd backend")
	st := s.waitStates(map[string]brokerv1.TenantState{
		"northwind": brokerv1.TenantState_TENANT_STATE_FAILED,
		"woodgrove": brokerv1.TenantState_TENANT_STATE_FAILED,
	})
	if e := st["northwind"].GetLastError(); !strings.Contains(e, "keyring") || !strings.Contains(e, "Secret Service") {
		t.Errorf("tenants does not name the keyring trouble: %q", e)
	}

	// The bus comes up with the credential in it: an administrator's
	// `credential show` reads it at once, and every tenant recovers.
	ss.up()
	if out, err := ss.run(w.secret, "secret-tool", "store", "--label=tokenbroker test", "service", "tokenbroker", "username", clientID); err != nil {
		t.Fatalf("secret-tool store: %v: %s", err, out)
	}
	s.ctl("", "credential", "show", "--app", "partner").wantExit(t, 0, "secret", "keyring")
	s.waitStates(map[string]brokerv1.TenantState{
		"northwind": brokerv1.TenantState_TENANT_STATE_READY,
		"woodgrove": brokerv1.TenantState_TENANT_STATE_READY,
	})
	first := s.get("northwind")

	// Hung: the Secret Service stops answering while a rotated secret is
	// being stored. Tokens in hand are still served; the write's outcome is
	// unknown within the timeout; brokerd stays up, reports the keyring in
	// tenants, and follows what the keyring holds once it answers.
	const rotated = "rotated-proc-secret-Q~0123456789abcdef"
	w.idp.AddApp(clientID, rotated) // the old secret is revoked
	ss.signal(syscall.SIGSTOP)
	if got := s.get("northwind"); got != first {
		t.Error("the cached token is not served while the keyring hangs")
	}
	s.ctl(rotated+"\n", "credential", "set", "--app", "partner").wantExit(t, 6, "may or may not be stored", "keyring")
	if r := s.ctl("", "tenants"); !strings.Contains(r.stdout, "WARNING: app partner:") || !strings.Contains(r.stdout, "keyring") {
		t.Errorf("tenants does not report the keyring trouble:\n%s", r.stdout)
	}
	wantTenant(t, s.get("woodgrove"), w.tenants["woodgrove"])
	ss.signal(syscall.SIGCONT)
	brokertest.WaitFor(t, "brokerd using the rotated secret the keyring now holds", func() bool {
		r := s.ctl("", "tenants")
		return r.code == 0 && !strings.Contains(r.stdout, "WARNING") && s.get("northwind") != first
	})
	if raw, _ := ss.lookup(clientID); storedSecret([]byte(raw)) != rotated {
		t.Error("the keyring does not hold the rotated secret after the abandoned write completed")
	}
	revoked := w.secret
	w.secret = rotated

	// Locked: a restarted brokerd finds the collection locked (and no
	// prompt it could answer); it says so, and recovers once unlocked.
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("brokerd exited %d after SIGTERM, want 0", code)
	}
	ss.lock()
	w.start(s)
	r := s.ctl("", "get", "--tenant", "woodgrove")
	if r.code == 0 {
		t.Fatalf("get with a locked keyring succeeded: %v", r)
	}
	for _, want := range []string{"keyring", "partner"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("get with a locked keyring: %q does not name %q", r.stderr, want)
		}
	}
	ss.startKeyring() // unlocked
	brokertest.WaitFor(t, "the login collection unlocked", func() bool {
		_, ok := ss.lookup(clientID)
		return ok
	})
	s.ctl("", "credential", "show", "--app", "partner").wantExit(t, 0, "secret")
	wantTenant(t, s.get("woodgrove"), w.tenants["woodgrove"])

	// What secret-tool sees after credential set: exactly the documented
	// item, holding brokerd's stored form; delete removes it.
	s.ctl(w.secret+"\n", "credential", "set", "--app", "partner", "--expires", time.Now().AddDate(1, 0, 0).Format(time.DateOnly)).wantExit(t, 0)
	raw, ok := ss.lookup(clientID)
	if !ok {
		t.Fatal("secret-tool finds no item after credential set")
	}
	var item struct {
		Version int       `json:"tokenbroker_credential"`
		Kind    string    `json:"kind"`
		Value   string    `json:"value"`
		SetAt   time.Time `json:"set_at"`
		Expires time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(raw), &item); err != nil {
		t.Fatalf("the keyring item is not brokerd's stored form: %v", err)
	}
	if item.Version != 1 || item.Kind != "secret" || item.Value != w.secret || item.SetAt.IsZero() || item.Expires.IsZero() {
		t.Errorf("keyring item: version %d kind %q value ok %v set_at %v expires_at %v", item.Version, item.Kind, item.Value == w.secret, item.SetAt, item.Expires)
	}
	search := exec.Command("secret-tool", "search", "--all", "service", "tokenbroker", "username", clientID)
	search.Env = append(childEnv(), ss.env()...)
	out, err := search.CombinedOutput() // secret-tool prints the attributes on stderr
	attrs := string(out)
	if err != nil {
		t.Fatalf("secret-tool search: %v", err)
	}
	if n := strings.Count(attrs, "attribute."); n != 2 || !strings.Contains(attrs, "attribute.service = tokenbroker") ||
		!strings.Contains(attrs, "attribute.username = "+clientID) {
		t.Errorf("the keyring item's attributes are not exactly service and username:\n%s", attrs)
	}
	s.ctl("", "credential", "show", "--app", "partner").wantExit(t, 0, "secret", "keyring", "expires")
	s.ctl("", "credential", "delete", "--app", "partner", "--yes").wantExit(t, 0)
	if _, ok := ss.lookup(clientID); ok {
		t.Error("secret-tool still finds the item after credential delete")
	}
	s.checkNoLeaks([]string{revoked, w.secret}, w.idp.Issued())
}
