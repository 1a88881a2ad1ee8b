package main_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/testuser"
)

// Tenants the reload tests add to a configWorld's northwind and woodgrove.
const (
	fabrikamID = "30303030-0000-4000-8000-00000000a003"
	contosoRID = "40404040-0000-4000-8000-00000000a004"
)

// setTenant gives the configured tenant name the extra TOML lines (its allow
// lists); without lines it removes the tenant from the configuration. The
// file is written by the caller.
func (w *configWorld) setTenant(t *testing.T, name string, lines ...string) {
	t.Helper()
	i := slices.IndexFunc(w.Tenants, func(tn brokertest.Tenant) bool { return tn.Name == name })
	if i < 0 {
		t.Fatalf("no tenant %s configured", name)
	}
	if lines == nil {
		w.Tenants = slices.Delete(w.Tenants, i, i+1)
		return
	}
	w.Tenants[i].Extra = lines
}

// addTenant registers tenant name at the fake Entra ID, consented to app
// partner, and adds it to the configuration (written by the caller).
func (w *configWorld) addTenant(name, id string) {
	w.AddTenant(name, id, "partner", true)
	w.tenants[name] = id
}

// reloadLine is the first line of brokerctl reload's output.
func reloadLine(config string, gen, added, removed, unchanged int) string {
	noun := "tenants"
	if added == 1 {
		noun = "tenant"
	}
	return fmt.Sprintf("reloaded %s (configuration %d): %d %s added, %d removed, %d unchanged\n", config, gen, added, noun, removed, unchanged)
}

// brokerctl reload as root: a tenant added is fetched and serves, one
// removed is refused, and those kept (an allow list narrowed, or nothing
// changed) serve the very token they held, with no request to Entra ID. The
// narrowed allow list applies at once.
func TestReload(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, "", map[string]string{"northwind": "allow_uids = [65534]"})
	w.addTenant("fabrikam", fabrikamID)
	w.write(t)
	d := w.startShared(s)
	before := map[string]string{}
	for _, name := range []string{"northwind", "woodgrove", "fabrikam"} {
		before[name] = s.get(name)
	}
	s.ctlAs(nobody, s.socket, "", "get", "--tenant", "northwind").wantExit(t, 0)
	asked := map[string]int{}
	for name, id := range w.tenants {
		asked[name] = w.idp.TokenRequests(id)
	}

	// woodgrove removed, contoso added, fabrikam as it was, northwind's
	// allow list narrowed to exclude nobody and its domain renamed.
	w.setTenant(t, "woodgrove")
	w.addTenant("contoso", contosoRID)
	w.setTenant(t, "northwind", "allow_uids = [4242]")
	w.Tenants[slices.IndexFunc(w.Tenants, func(tn brokertest.Tenant) bool { return tn.Name == "northwind" })].Domain = "northwind-renamed.example"
	w.write(t)
	r := s.ctl("", "reload")
	r.wantExit(t, 0)
	if want := reloadLine(w.config, 2, 1, 1, 2) + "added: contoso\nremoved: woodgrove\n"; r.stdout != want {
		t.Errorf("brokerctl reload printed\n%s\nwant\n%s", r.stdout, want)
	}
	for _, name := range []string{"northwind", "fabrikam"} {
		if s.get(name) != before[name] {
			t.Errorf("%s serves another token after a reload that kept it", name)
		}
		if n := w.idp.TokenRequests(w.tenants[name]) - asked[name]; n != 0 {
			t.Errorf("%d token requests for %s, kept by the reload; want none", n, name)
		}
	}
	if s.get("northwind-renamed.example") != before["northwind"] {
		t.Error("northwind's new domain serves another token than northwind")
	}
	s.ctl("", "get", "--tenant", "northwind.onmicrosoft.com").wantExit(t, 3, "brokerctl: NotFound: ", `tenant "northwind.onmicrosoft.com" is not configured`)
	wantTenant(t, s.get("contoso"), contosoRID)
	s.ctl("", "get", "--tenant", "woodgrove").wantExit(t, 3, "brokerctl: NotFound: ", `tenant "woodgrove" is not configured`, "contoso, fabrikam, northwind")
	s.ctlAs(nobody, s.socket, "", "get", "--tenant", "northwind").wantExit(t, 4, "PermissionDenied", `uid 65534 may not get tokens for tenant "northwind"`)
	d.waitLog(t, "configuration reloaded")
	if e := d.stderr.String(); !regexp.MustCompile(`msg="configuration reloaded" generation=2 tenants=3 added=1 removed=1 unchanged=2 added_tenants=contoso removed_tenants=woodgrove`).MatchString(e) {
		t.Errorf("no log line of the reload with what it changed:\n%s", e)
	}
	if code := d.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("brokerd exited %d after SIGTERM, want 0", code)
	}
	s.checkNoLeaks([]string{w.secret}, w.idp.Issued())
}

// SIGHUP reloads the configuration like brokerctl reload, and never stops
// brokerd.
func TestReloadSIGHUP(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	w := newConfigWorld(t, s, "memory", "0f0f0f0f-0000-4000-8000-00000000f001")
	w.addTenant("fabrikam", fabrikamID)
	w.write(t)
	d := w.start(s)
	s.ctl(w.secret, "credential", "set", "--app", "partner").wantExit(t, 0)
	northwind, woodgrove := s.get("northwind"), s.get("woodgrove")
	asked := w.idp.TokenRequests(w.tenants["northwind"])

	w.setTenant(t, "woodgrove")
	w.setTenant(t, "fabrikam")
	w.addTenant("contoso", contosoRID)
	w.write(t)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	brokertest.WaitFor(t, "brokerd to list contoso and not woodgrove or fabrikam", func() bool {
		r := s.ctl("", "tenants", "--output", "json")
		if !d.running() {
			t.Fatalf("brokerd exited %d on SIGHUP:\n%s", d.wait(t), d.stderr.String())
		}
		r.wantExit(t, 0)
		l := s.tenants()
		return l["contoso"] != nil && l["woodgrove"] == nil && l["fabrikam"] == nil && l["northwind"] != nil
	})
	d.waitLog(t, `msg="SIGHUP: reloading the configuration" config=`+w.config)
	d.waitLog(t, `msg="configuration reloaded" generation=2 tenants=2 added=1 removed=2 unchanged=1 added_tenants=contoso removed_tenants=fabrikam,woodgrove`)
	if s.get("northwind") != northwind || w.idp.TokenRequests(w.tenants["northwind"]) != asked {
		t.Error("northwind, kept by the reload, serves another token or asked Entra ID again")
	}
	wantTenant(t, s.get("contoso"), contosoRID)
	s.ctl("", "get", "--tenant", "woodgrove").wantExit(t, 3, "brokerctl: NotFound: ", `tenant "woodgrove" is not configured`)

	// Put woodgrove back: a tenant added again is fetched afresh.
	w.addTenant("woodgrove", w.tenants["woodgrove"])
	w.write(t)
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.waitLog(t, `msg="configuration reloaded" generation=3 tenants=3 added=1 removed=0 unchanged=2 added_tenants=woodgrove`)
	again := s.get("woodgrove")
	wantTenant(t, again, w.tenants["woodgrove"])
	if again == woodgrove {
		t.Error("woodgrove, removed and added again, serves the token it held before it was removed")
	}
	if !d.running() {
		t.Fatalf("brokerd exited %d", d.code)
	}
	if code := d.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("brokerd exited %d after SIGTERM, want 0", code)
	}
	s.checkNoLeaks([]string{w.secret}, w.idp.Issued())
}

// A configuration brokerd cannot use, or one that changes a setting only a
// restart can change, is refused with its reason, by brokerctl reload and
// by SIGHUP alike; the configuration in use keeps serving the very tokens
// it held. Only an admin may reload.
func TestReloadRefused(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, "allow_uids = [65534]", nil)
	d := w.startShared(s)
	tokens := map[string]string{"northwind": s.get("northwind"), "woodgrove": s.get("woodgrove")}
	asked := w.idp.TotalTokenRequests()
	good, err := os.ReadFile(w.config)
	if err != nil {
		t.Fatal(err)
	}
	refusals := 0
	stillServing := func(what string) {
		t.Helper()
		refusals++
		brokertest.WaitFor(t, fmt.Sprintf("%d reload refusals in the log", refusals), func() bool {
			return strings.Count(d.stderr.String(), `msg="reload refused; the configuration in use keeps serving"`) == refusals
		})
		for name, tok := range tokens {
			if s.get(name) != tok {
				t.Errorf("after %s, %s serves another token", what, name)
			}
		}
		if !d.running() {
			t.Fatalf("brokerd exited %d after %s", d.code, what)
		}
	}

	for _, tt := range []struct {
		name   string
		config string
		code   int
		subs   []string
	}{
		{"invalid TOML", string(good) + "\n[tenants.broken\n", 2,
			[]string{"brokerctl: InvalidArgument: ", fmt.Sprintf("%s:%d: expected ']'", w.config, strings.Count(string(good), "\n")+2)}},
		{"unknown key", strings.Replace(string(good), "keystore =", "refresh_befor = \"10m\"\nkeystore =", 1), 2,
			[]string{"brokerctl: InvalidArgument: ", w.config + ":2:", "refresh_befor"}},
		{"restart-only setting", strings.Replace(string(good), "keystore =", "prefetch_rate = 7\nkeystore =", 1), 5,
			[]string{"brokerctl: FailedPrecondition: ", "prefetch_rate cannot change while brokerd runs", "restart brokerd"}},
		{"restart-only limit", string(good) + "\n[limits]\nmax_scopes = 4\n", 5,
			[]string{"brokerctl: FailedPrecondition: ", "limits.max_scopes cannot change while brokerd runs"}},
	} {
		if err := os.WriteFile(w.config, []byte(tt.config), 0o600); err != nil {
			t.Fatal(err)
		}
		s.ctl("", "reload").wantExit(t, tt.code, tt.subs...)
		stillServing("brokerctl reload of a configuration with " + tt.name)
	}
	// SIGHUP with the last of them: logged, and brokerd goes on.
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	stillServing("SIGHUP with a configuration brokerd refuses")

	// A configuration others could change is refused as at start.
	if err := os.WriteFile(w.config, good, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w.config, 0o666); err != nil {
		t.Fatal(err)
	}
	s.ctl("", "reload").wantExit(t, 2, "brokerctl: InvalidArgument: ", "refusing the configuration "+w.config)
	stillServing("brokerctl reload of a configuration anyone may write")
	if err := os.Chmod(w.config, 0o600); err != nil {
		t.Fatal(err)
	}
	// Gone: an error, not a pass of the check (a file that appears after
	// it could be anyone's).
	if err := os.Rename(w.config, w.config+".away"); err != nil {
		t.Fatal(err)
	}
	s.ctl("", "reload").wantExit(t, 2, "brokerctl: InvalidArgument: ", "no configuration file at "+w.config)
	stillServing("brokerctl reload with the configuration file gone")
	// A FIFO is refused at once, not waited on.
	if err := syscall.Mkfifo(w.config, 0o600); err != nil {
		t.Fatal(err)
	}
	s.ctl("", "reload").wantExit(t, 2, "brokerctl: InvalidArgument: ", w.config+" is not a regular file")
	stillServing("brokerctl reload of a FIFO")
	if err := os.Remove(w.config); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(w.config+".away", w.config); err != nil {
		t.Fatal(err)
	}
	if n := w.idp.TotalTokenRequests(); n != asked {
		t.Errorf("%d token requests during refused reloads, want none", n-asked)
	}

	denied := s.ctlAs(nobody, s.socket, "", "reload")
	denied.wantExit(t, 4, "brokerctl: PermissionDenied: ", "uid 65534 may not call Reload")
	if line := auditLine(t, d, denied, "Reload"); !strings.Contains(line, "uid=65534") || !strings.Contains(line, "allowed=false") {
		t.Errorf("the denied reload's audit line: %s", line)
	}
	// The refused reloads made no configuration: this is the second.
	r := s.ctl("", "reload")
	r.wantExit(t, 0)
	if want := reloadLine(w.config, 2, 0, 0, 2); r.stdout != want {
		t.Errorf("brokerctl reload printed %q, want %q", r.stdout, want)
	}
	if code := d.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("brokerd exited %d after SIGTERM, want 0", code)
	}
	s.checkNoLeaks([]string{w.secret}, w.idp.Issued())
}

// caller is testdata/caller: one connection to brokerd, one command per
// line.
type caller struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startCaller(t *testing.T, cred *syscall.Credential, socket string) *caller {
	t.Helper()
	c := &caller{cmd: exec.Command(bin("caller"), socket), lines: make(chan string, 16)}
	c.cmd.Env = childEnv()
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	c.cmd.Stderr = os.Stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.cmd.Wait() })
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	return c
}

// do sends command and returns the next want lines the caller prints, in
// the order it prints them.
func (c *caller) do(t *testing.T, command string, want int) []string {
	t.Helper()
	if command != "" {
		if _, err := io.WriteString(c.stdin, command+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	timeout := time.After(deadline)
	for len(got) < want {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("caller exited after %q", got)
			}
			got = append(got, l)
		case <-timeout:
			t.Fatalf("caller printed %q after %q, want %d lines", got, command, want)
		}
	}
	return got
}

// A connection open across a reload is held to the new allow lists: its
// next call is denied, and the denial is audited under the new
// configuration; a watch it holds ends with PERMISSION_DENIED. Root's
// watch of a tenant the reload removed ends with NOT_FOUND.
func TestReloadOpenConnection(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, "", map[string]string{"northwind": "allow_uids = [4242]"})
	d := w.startShared(s)
	c := startCaller(t, allowedCaller, s.socket)
	for _, cmd := range []string{"get northwind", "get northwind", "watch northwind"} {
		if got := c.do(t, cmd, 1); !slices.Contains([]string{"get OK", "watch OK"}, got[0]) {
			t.Fatalf("%s before the reload: %q, want OK", cmd, got[0])
		}
	}
	admin := startCaller(t, nil, s.socket)
	if got := admin.do(t, "watch woodgrove", 1); got[0] != "watch OK" {
		t.Fatalf("root's watch of woodgrove: %q, want OK", got[0])
	}

	// northwind no longer allows 4242; woodgrove is removed.
	w.setTenant(t, "northwind", "allow_uids = [65534]")
	w.setTenant(t, "woodgrove")
	w.write(t)
	s.ctl("", "reload").wantExit(t, 0)
	if got := admin.do(t, "get woodgrove", 2); !slices.Equal(sorted(got), []string{"get NotFound", "watch ended NotFound"}) {
		t.Errorf("root's connection after woodgrove was removed: %q, want NotFound for the call and the watch", got)
	}
	got := c.do(t, "get northwind", 2) // and the watch's end, in either order
	if want := []string{"get PermissionDenied", "watch ended PermissionDenied"}; !slices.Equal(sorted(got), want) {
		t.Errorf("after narrowing the allow list: %q, want %q", got, want)
	}
	if got := c.do(t, "get northwind", 1); got[0] != "get PermissionDenied" {
		t.Errorf("a second call after the reload: %q, want PermissionDenied", got[0])
	}

	// The decision is audited once per configuration: one grant before
	// the reload, one denial after it. A later admin call's audit line
	// marks the end of the log to count in.
	mark := s.ctl("", "tenants")
	mark.wantExit(t, 0)
	auditLine(t, d, mark, "ListTenants")
	log := d.stderr.String()
	pid := fmt.Sprint(c.cmd.Process.Pid)
	lineRE := func(allowed bool) *regexp.Regexp {
		return regexp.MustCompile(`(?m)^.*msg=audit rpc=GetToken tenant=northwind uid=4242 .* pid=` + pid + ` .* allowed=` + fmt.Sprint(allowed) + ` .*$`)
	}
	grants, denials := lineRE(true).FindAllStringIndex(log, -1), lineRE(false).FindAllStringIndex(log, -1)
	reloaded := strings.Index(log, `msg="configuration reloaded"`)
	if len(grants) != 1 || len(denials) != 1 {
		t.Fatalf("%d grants and %d denials audited for the caller's connection, want 1 and 1:\n%s", len(grants), len(denials), log)
	}
	if !(grants[0][0] < reloaded && reloaded < denials[0][0]) {
		t.Errorf("the grant is not audited before the reload and the denial after it:\n%s", log)
	}
	if !strings.Contains(log, `msg=audit rpc=WatchToken tenant=northwind uid=4242 `) {
		t.Errorf("the watch was not audited:\n%s", log)
	}
	for _, c := range []*caller{c, admin} {
		c.stdin.Close()
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("caller: %v", err)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
