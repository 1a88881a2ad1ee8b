package main_test

// These tests run brokerd and brokerctl as real processes: TestMain builds
// both, every test starts its own brokerd on its own socket in a short
// temporary directory (sun_path holds at most 108 bytes), and talks to it
// with the brokerctl binary, checking exit statuses and messages the way a
// script or a person would see them.
//
// The keyring test needs a Secret Service and the socket activation test
// systemd-socket-activate. Without them they skip, unless $CI is non-empty,
// in which case they fail. `make test` runs everything inside
// scripts/with-secret-service.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/internal/testuser"
	"github.com/tokenbroker/tokenbroker/keystore"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// The demo world of brokerd --dev (cmd/brokerd/dev.go).
const (
	devClientID = "d0d0d0d0-0000-4000-8000-000000000001"
	devSecret   = "dev-secret-not-for-production"
	contosoID   = "c0c0c0c0-0000-4000-8000-000000000001"
	tailspinID  = "7a157a15-0000-4000-8000-000000000003"
)

// deadline bounds every wait: for a process to start serving, to exit, or
// for a tenant to reach a state. Nothing is timed; this only keeps a broken
// build from hanging the run.
const deadline = 30 * time.Second

// binDir holds the binaries TestMain builds: brokerd, brokerctl, flood
// (testdata/flood), the connection flooder of the limits tests, squatter
// (testdata/squatter), the listener of the trust tests, and caller
// (testdata/caller), the one-connection client of the reload tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tb-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+string(os.PathSeparator),
		"github.com/tokenbroker/tokenbroker/cmd/brokerd",
		"github.com/tokenbroker/tokenbroker/cmd/brokerctl",
		"./testdata/flood", "./testdata/squatter", "./testdata/caller")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building brokerd and brokerctl:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	// Other users run these binaries in the access tests.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func bin(name string) string { return filepath.Join(binDir, name) }

// childEnv is the test's environment without anything that would point a
// child at another daemon, socket or service manager, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "BROKERD_SOCKET", "BROKERD_UID", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "SSL_CERT_FILE", "SSL_CERT_DIR":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// proc is a started brokerd (or systemd-socket-activate exec'ing brokerd).
// The test's cleanup kills and reaps it if it is still running.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr brokertest.LogBuffer
	exited         chan struct{} // closed once Wait has returned
	code           int           // exit status; -1 when killed by a signal
}

func startProc(t *testing.T, env []string, path string, args ...string) *proc {
	t.Helper()
	return startProcAs(t, nil, env, path, args...)
}

// startProcAs is startProc as the user cred (nil: the test's own).
func startProcAs(t *testing.T, cred *syscall.Credential, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: filepath.Base(path) + " " + strings.Join(args, " "), exited: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = env
	if cred != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if p.running() {
			_ = p.cmd.Process.Kill()
		}
		select {
		case <-p.exited:
		case <-time.After(deadline):
			t.Errorf("%s (pid %d) was not reaped after SIGKILL", p.name, p.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("%s (pid %d)\n--- stdout:\n%s--- stderr:\n%s", p.name, p.cmd.Process.Pid, p.stdout.String(), p.stderr.String())
		}
	})
	return p
}

func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// wait waits for the process to exit and returns its exit status.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(deadline):
		t.Fatalf("%s did not exit within %v", p.name, deadline)
		return 0
	}
}

// signal sends sig and returns the exit status.
func (p *proc) signal(t *testing.T, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
	return p.wait(t)
}

// waitLog waits until the process's stderr contains s; it fails at once if
// the process exits first.
func (p *proc) waitLog(t *testing.T, s string) {
	t.Helper()
	brokertest.WaitFor(t, fmt.Sprintf("%q in the stderr of %s", s, p.name), func() bool {
		if strings.Contains(p.stderr.String(), s) {
			return true
		}
		if !p.running() {
			t.Fatalf("%s exited with status %d before logging %q; stderr:\n%s", p.name, p.code, s, p.stderr.String())
		}
		return false
	})
}

// waitServing waits for brokerd's "serving" log line, written once the
// socket is listening.
func (p *proc) waitServing(t *testing.T) { p.waitLog(t, `msg="brokerd serving"`) }

// result is one finished brokerctl run.
type result struct {
	args           []string
	stdout, stderr string
	code           int
	pid            int
}

func (r result) String() string {
	return fmt.Sprintf("brokerctl %s: exit %d, stdout %q, stderr %q", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// wantExit checks the exit status. A failure must print nothing on stdout
// and exactly one line on stderr, "brokerctl: ..." holding every one of
// subs; a success nothing on stderr.
func (r result) wantExit(t *testing.T, code int, subs ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%v; want exit %d", r, code)
	}
	if code == 0 {
		if r.stderr != "" {
			t.Errorf("%v; want an empty stderr", r)
		}
		return
	}
	if r.stdout != "" {
		t.Errorf("%v; want nothing on stdout when failing", r)
	}
	if !strings.HasPrefix(r.stderr, "brokerctl: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("%v; want one line \"brokerctl: ...\" on stderr", r)
	}
	for _, s := range subs {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("%v; stderr lacks %q", r, s)
		}
	}
}

// session is one test's world: a short directory, the socket in it, the
// processes started and every brokerctl run, kept for the leak scan.
type session struct {
	t      *testing.T
	dir    string
	socket string
	// ctlEnv is extra environment for every brokerctl run.
	ctlEnv []string

	mu    sync.Mutex
	procs []*proc
	runs  []result
}

func newSession(t *testing.T) *session {
	t.Helper()
	dir, err := os.MkdirTemp("", "pt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &session{t: t, dir: dir, socket: filepath.Join(dir, "brokerd.sock")}
}

// brokerd starts brokerd with args and the extra environment.
func (s *session) brokerd(env []string, args ...string) *proc {
	s.t.Helper()
	return s.track(startProc(s.t, childEnv(env...), bin("brokerd"), args...))
}

// devBrokerd starts brokerd --dev on the session's socket and waits until it
// serves.
func (s *session) devBrokerd() *proc {
	s.t.Helper()
	p := s.brokerd(nil, "--dev", "--socket", s.socket)
	p.waitServing(s.t)
	return p
}

func (s *session) track(p *proc) *proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.procs = append(s.procs, p)
	return p
}

// ctl runs brokerctl --socket <the session's socket> args with stdin.
func (s *session) ctl(stdin string, args ...string) result {
	s.t.Helper()
	return s.ctlAt(s.socket, stdin, args...)
}

// ctlAt runs brokerctl --socket socket args with stdin.
func (s *session) ctlAt(socket, stdin string, args ...string) result {
	s.t.Helper()
	return s.ctlAs(nil, socket, stdin, args...)
}

// ctlAs runs brokerctl --socket socket args with stdin as the user cred
// (nil: as the test's own user).
func (s *session) ctlAs(cred *syscall.Credential, socket, stdin string, args ...string) result {
	s.t.Helper()
	args = append([]string{"--socket", socket}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*deadline)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin("brokerctl"), args...)
	cmd.Env = childEnv(s.ctlEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		s.t.Fatalf("brokerctl %s: %v", strings.Join(args, " "), err)
	}
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode(), pid: cmd.ProcessState.Pid()}
	if r.code < 0 {
		s.t.Fatalf("%v: killed (%v)", r, err)
	}
	s.mu.Lock()
	s.runs = append(s.runs, r)
	s.mu.Unlock()
	return r
}

// get runs `brokerctl get --tenant tenant`, requires success and returns the
// token after checking that stdout is exactly one JWT and a newline.
func (s *session) get(tenant string) string {
	s.t.Helper()
	r := s.ctl("", "get", "--tenant", tenant)
	r.wantExit(s.t, 0)
	tok, ok := strings.CutSuffix(r.stdout, "\n")
	if !ok || strings.ContainsAny(tok, "\n\r \t") || !jwtRE.MatchString(tok) || jwtRE.FindString(tok) != tok {
		s.t.Fatalf("%v; want exactly one JWT and a newline on stdout", r)
	}
	return tok
}

// wantTenant checks that token was issued in tenant tenantID.
func wantTenant(t *testing.T, token, tenantID string) {
	t.Helper()
	claims, err := entratest.Claims(token)
	if err != nil {
		t.Fatalf("token claims: %v", err)
	}
	if claims["tid"] != tenantID {
		t.Errorf("token tid = %v, want %s", claims["tid"], tenantID)
	}
}

// tenants runs `brokerctl tenants --output json` and decodes it by tenant
// name.
func (s *session) tenants() map[string]*brokerv1.TenantStatus {
	s.t.Helper()
	r := s.ctl("", "tenants", "--output", "json")
	r.wantExit(s.t, 0)
	var resp brokerv1.ListTenantsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		s.t.Fatalf("tenants --output json is not a ListTenantsResponse: %v\n%s", err, r.stdout)
	}
	byName := map[string]*brokerv1.TenantStatus{}
	for _, ts := range resp.GetTenants() {
		byName[ts.GetName()] = ts
	}
	return byName
}

// waitStates polls `tenants --output json` until every named tenant is in
// its wanted state, and returns the last listing.
func (s *session) waitStates(want map[string]brokerv1.TenantState) map[string]*brokerv1.TenantStatus {
	s.t.Helper()
	var got map[string]*brokerv1.TenantStatus
	brokertest.WaitFor(s.t, fmt.Sprintf("tenant states %v", want), func() bool {
		got = s.tenants()
		for name, st := range want {
			if got[name].GetState() != st {
				return false
			}
		}
		return true
	})
	return got
}

// jwtRE matches anything shaped like a JWT (a JSON header starts "eyJ").
var jwtRE = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`)

// checkNoLeaks scans everything the session's processes printed: no
// secret may appear anywhere, and no token (those given, or anything shaped
// like a JWT) anywhere but on the stdout of a successful `brokerctl get`,
// which must hold exactly one. brokerd --dev's banner is exempt from the
// secret scan: like `vault server -dev`, it prints the demo credential on
// purpose.
func (s *session) checkNoLeaks(secrets, tokens []string) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	scan := func(what, text string, forSecrets, forTokens bool) {
		s.t.Helper()
		if forSecrets {
			for _, sec := range secrets {
				if strings.Contains(text, sec) {
					s.t.Errorf("%s contains a secret:\n%s", what, text)
				}
			}
		}
		if !forTokens {
			return
		}
		for _, tok := range tokens {
			if strings.Contains(text, tok) {
				s.t.Errorf("%s contains an issued token:\n%s", what, text)
			}
		}
		if m := jwtRE.FindString(text); m != "" {
			s.t.Errorf("%s contains something shaped like a JWT (%.20s...):\n%s", what, m, text)
		}
	}
	for _, p := range s.procs {
		dev := strings.Contains(p.name, "--dev")
		scan(p.name+" stdout", p.stdout.String(), !dev, true)
		scan(p.name+" stderr", p.stderr.String(), true, true)
	}
	for _, r := range s.runs {
		what := "brokerctl " + strings.Join(r.args, " ")
		scan(what+" stderr", r.stderr, true, true)
		isGet := len(r.args) > 2 && r.args[2] == "get" && r.code == 0
		scan(what+" stdout", r.stdout, true, !isGet)
	}
}

// brokerd --dev end to end through the brokerctl binary.
func TestDevMode(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	d := s.brokerd(nil, "--dev", "--socket", s.socket)

	// Poll until a token comes back: brokerctl exits 6 while the socket
	// is not there yet.
	var token string
	brokertest.WaitFor(t, "brokerctl get --tenant contoso to succeed", func() bool {
		if !d.running() {
			t.Fatalf("brokerd --dev exited with %d:\n%s", d.code, d.stderr.String())
		}
		r := s.ctl("", "get", "--tenant", "contoso")
		if r.code == 6 {
			return false
		}
		r.wantExit(t, 0)
		token = strings.TrimSuffix(r.stdout, "\n")
		return true
	})
	if again := s.get("contoso"); again != token {
		t.Errorf("second get returned another token; want the cached one")
	}
	wantTenant(t, token, contosoID)

	// The banner names the socket and says this is not Microsoft.
	d.waitLog(t, `msg="brokerd serving"`)
	brokertest.WaitFor(t, "the dev banner", func() bool { return strings.Contains(d.stdout.String(), "Stop with Ctrl-C") })
	banner := d.stdout.String()
	for _, want := range []string{"DEV MODE", "does NOT talk to Microsoft", "Socket: " + s.socket, "brokerctl --socket " + s.socket + " get --tenant contoso"} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	m := regexp.MustCompile(`fake Entra ID at (https://127\.0\.0\.1:\d+),`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner does not name the fake Entra ID's URL:\n%s", banner)
	}
	consentURL := fmt.Sprintf("%s/%s/adminconsent?client_id=%s", m[1], tailspinID, devClientID)

	// tenants --output json: protojson of ListTenantsResponse.
	list := s.waitStates(map[string]brokerv1.TenantState{
		"contoso":  brokerv1.TenantState_TENANT_STATE_READY,
		"fabrikam": brokerv1.TenantState_TENANT_STATE_READY,
		"tailspin": brokerv1.TenantState_TENANT_STATE_FAILED,
	})
	if len(list) != 3 {
		t.Errorf("tenants: %d, want 3 (contoso, fabrikam, tailspin)", len(list))
	}
	if c := list["contoso"]; c.GetTenantId() != contosoID || c.GetApp() != "partner" || c.GetExpiresAt() == nil {
		t.Errorf("contoso = %v", c)
	}
	if e := list["tailspin"].GetLastError(); !strings.Contains(e, "AADSTS700016") || !strings.Contains(e, consentURL) {
		t.Errorf("tailspin last_error = %q, want AADSTS700016 and %s", e, consentURL)
	}

	// The table.
	r := s.ctl("", "tenants")
	r.wantExit(t, 0)
	table, apps, _ := strings.Cut(r.stdout, "\n\n") // the tenants, then the apps and their credentials
	lines := strings.Split(table, "\n")
	if len(lines) != 4 || !regexp.MustCompile(`^NAME\s+TENANT ID\s+APP\s+STATE\s+EXPIRES IN\s+NEXT REFRESH\s+LAST ERROR$`).MatchString(lines[0]) {
		t.Errorf("tenants table:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`(?m)^contoso\s+` + contosoID + `\s+partner\s+ready\s`).MatchString(r.stdout) {
		t.Errorf("tenants table has no ready row for contoso:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`(?m)^tailspin\s.*\sfailed\s.*AADSTS700016`).MatchString(r.stdout) {
		t.Errorf("tenants table has no failed row for tailspin:\n%s", r.stdout)
	}

	// Errors: exit status by class, one line, what to do.
	s.ctl("", "get", "--tenant", "tailspin").wantExit(t, 5, "brokerctl: FailedPrecondition: ", "AADSTS700016", consentURL)
	s.ctl("", "get", "--tenant", "nosuch").wantExit(t, 3, "brokerctl: NotFound: ", `tenant "nosuch" is not configured`, "contoso, fabrikam, tailspin")

	// A wrong secret is refused and the old one kept; the right one is
	// stored.
	const wrong = "wrong-secret-Q~processtest000000000000"
	s.ctl(wrong+"\n", "credential", "set", "--app", "partner").wantExit(t, 5,
		"brokerctl: FailedPrecondition: ", "AADSTS7000215", "was not stored")
	s.get("fabrikam")
	r = s.ctl(devSecret, "credential", "set", "--app", "partner")
	r.wantExit(t, 0)
	if !regexp.MustCompile(`^credential for app partner stored \(verified with tenant (contoso|fabrikam)\)\n$`).MatchString(r.stdout) {
		t.Errorf("%v; want the stored-and-verified line", r)
	}
	wantTenant(t, s.get("contoso"), contosoID)
	if !regexp.MustCompile(`(?m)^partner\s+secret\s`).MatchString(apps) {
		t.Errorf("tenants shows no credential row for app partner:\n%s", r.stdout)
	}

	// The banner's certificate: registered on the demo app, so it verifies.
	m = regexp.MustCompile(`credential set --app partner --certificate (\S+)`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner does not offer a certificate to try:\n%s", banner)
	}
	s.ctl("", "credential", "set", "--app", "partner", "--certificate", m[1]).wantExit(t, 0, "stored (verified with tenant", "thumbprint")
	s.ctl("", "credential", "show", "--app", "partner").wantExit(t, 0, "certificate", "memory", "CN=tokenbroker dev certificate")
	pem, err := os.ReadFile(m[1])
	if err != nil {
		t.Fatal(err)
	}
	s.get("fabrikam")

	s.checkNoLeaks([]string{devSecret, wrong, keyBody(pem)}, []string{token})
}

// brokerd creates the socket's missing directory 0700 and the socket
// 0600.
func TestSocketPermissions(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	s.socket = filepath.Join(s.dir, "run", "brokerd", "brokerd.sock")
	s.devBrokerd()
	s.get("contoso")

	fi, err := os.Lstat(s.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
	for _, dir := range []string{filepath.Dir(s.socket), filepath.Dir(filepath.Dir(s.socket))} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want a directory with 0700", dir, fi.Mode())
		}
	}
	s.checkNoLeaks([]string{devSecret}, nil)
}

// A second brokerd on a socket a live one answers on refuses to start
// and leaves the first alone.
func TestSecondDaemonRefused(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	first := s.devBrokerd()
	before, err := os.Lstat(s.socket)
	if err != nil {
		t.Fatal(err)
	}

	second := s.brokerd(nil, "--dev", "--socket", s.socket)
	if code := second.wait(t); code == 0 {
		t.Errorf("second brokerd exited 0; want a failure")
	}
	want := "brokerd: another brokerd is already serving on " + s.socket
	if e := second.stderr.String(); !strings.Contains(e, want) {
		t.Errorf("second brokerd stderr = %q, want %q", e, want)
	}
	if strings.Contains(second.stdout.String(), "DEV MODE") {
		t.Errorf("the refused brokerd printed its banner:\n%s", second.stdout.String())
	}

	after, err := os.Lstat(s.socket)
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("the first brokerd's socket was replaced or removed (%v)", err)
	}
	if !first.running() {
		t.Fatal("the first brokerd exited")
	}
	wantTenant(t, s.get("contoso"), contosoID)
	s.checkNoLeaks([]string{devSecret}, nil)
}

// A stale socket is reported by brokerctl as "not running" and replaced
// by brokerd; a file that is not a socket is never replaced.
func TestStaleSocket(t *testing.T) {
	t.Parallel()
	staleBy := map[string]func(t *testing.T, s *session){
		"closed listener": func(t *testing.T, s *session) {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.socket, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			l.SetUnlinkOnClose(false)
			l.Close()
		},
		"brokerd killed with SIGKILL": func(t *testing.T, s *session) {
			p := s.devBrokerd()
			if code := p.signal(t, syscall.SIGKILL); code != -1 {
				t.Fatalf("brokerd exited %d after SIGKILL", code)
			}
		},
	}
	for name, makeStale := range staleBy {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := newSession(t)
			makeStale(t, s)
			if fi, err := os.Lstat(s.socket); err != nil || fi.Mode().Type() != os.ModeSocket {
				t.Fatalf("no stale socket at %s: %v", s.socket, err)
			}
			s.ctl("", "get", "--tenant", "contoso").wantExit(t, 6,
				"brokerctl: Unavailable: ", "brokerd is not answering on "+s.socket, "connection refused")

			s.devBrokerd()
			wantTenant(t, s.get("contoso"), contosoID)
			s.checkNoLeaks([]string{devSecret}, nil)
		})
	}

	t.Run("regular file", func(t *testing.T) {
		t.Parallel()
		s := newSession(t)
		const content = "not a socket; keep me\n"
		if err := os.WriteFile(s.socket, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		s.ctl("", "get", "--tenant", "contoso").wantExit(t, 2,
			"brokerctl: InvalidArgument: ", s.socket+" is not a Unix socket")

		p := s.brokerd(nil, "--dev", "--socket", s.socket)
		if code := p.wait(t); code != 1 {
			t.Errorf("brokerd exited %d, want 1", code)
		}
		if e := p.stderr.String(); !strings.Contains(e, "brokerd: "+s.socket+" exists and is not a socket") {
			t.Errorf("brokerd stderr = %q, want it to refuse a path that is not a socket", e)
		}
		if got, err := os.ReadFile(s.socket); err != nil || string(got) != content {
			t.Errorf("the file at the socket path was changed: %q, %v", got, err)
		}
		s.checkNoLeaks([]string{devSecret}, nil)
	})
}

// SIGTERM and SIGINT stop brokerd gracefully: exit 0, socket removed.
func TestSignalStops(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			s := newSession(t)
			p := s.devBrokerd()
			s.get("contoso")
			if code := p.signal(t, sig); code != 0 {
				t.Errorf("brokerd exited %d after %v, want 0", code, sig)
			}
			if _, err := os.Lstat(s.socket); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket still there after brokerd stopped: %v", err)
			}
			if e := p.stderr.String(); !strings.Contains(e, `msg="brokerd stopping"`) {
				t.Errorf("no stopping log line:\n%s", e)
			}
			s.ctl("", "get", "--tenant", "contoso").wantExit(t, 6, "brokerctl: Unavailable: ", "no brokerd socket at "+s.socket)
			s.checkNoLeaks([]string{devSecret}, nil)
		})
	}
}

// configWorld is a fake Entra ID in the test process and a brokerd
// configuration that points at it, trusted through SSL_CERT_FILE.
type configWorld struct {
	*brokertest.World
	idp      *entratest.Server
	clientID string
	secret   string
	tenants  map[string]string // name -> tenant id
	config   string            // path of the TOML file
	env      []string          // SSL_CERT_FILE for brokerd
}

// newConfigWorld is a World with app partner (clientID, a fresh secret)
// and tenants northwind and woodgrove, whose configuration (keystore as
// given) is written to the session's directory.
func newConfigWorld(t *testing.T, s *session, keystore, clientID string) *configWorld {
	t.Helper()
	bw := brokertest.NewWorldWith(t, brokertest.App{Name: "partner", ClientID: clientID,
		Secret: "proc-secret-Q~" + strings.ToLower(rand.Text())}, 0)
	bw.Keystore = keystore
	w := &configWorld{
		World: bw, idp: bw.IdP, clientID: bw.ClientID, secret: bw.Secret,
		tenants: map[string]string{
			"northwind": "10101010-0000-4000-8000-00000000a001",
			"woodgrove": "20202020-0000-4000-8000-00000000a002",
		},
		config: filepath.Join(s.dir, "brokerd.toml"),
	}
	for _, name := range []string{"northwind", "woodgrove"} {
		bw.AddTenant(name, w.tenants[name], "partner", true)
	}
	w.write(t)
	ca := filepath.Join(s.dir, "entratest-ca.pem")
	if err := os.WriteFile(ca, bw.IdP.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	w.env = []string{"SSL_CERT_FILE=" + ca}
	return w
}

// write writes the World's configuration, with the top-level lines in top,
// to the config file.
func (w *configWorld) write(t *testing.T, top ...string) {
	t.Helper()
	if err := os.WriteFile(w.config, []byte(w.Config(top...)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (w *configWorld) start(s *session) *proc {
	s.t.Helper()
	p := s.brokerd(w.env, "--config", w.config, "--socket", s.socket)
	p.waitServing(s.t)
	return p
}

// brokerd with a configuration against a fake Entra ID it trusts through
// SSL_CERT_FILE: no credential until `credential set`, then tokens for every
// tenant.
func TestConfigMode(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	w := newConfigWorld(t, s, "memory", "0c0c0c0c-0000-4000-8000-00000000c001")
	p := w.start(s)
	if e := p.stderr.String(); !strings.Contains(e, "keystore=memory") || !strings.Contains(e, "dev=false") {
		t.Errorf("serving line does not say keystore=memory dev=false:\n%s", e)
	}

	s.waitStates(map[string]brokerv1.TenantState{
		"northwind": brokerv1.TenantState_TENANT_STATE_NO_CREDENTIAL,
		"woodgrove": brokerv1.TenantState_TENANT_STATE_NO_CREDENTIAL,
	})
	s.ctl("", "get", "--tenant", "northwind").wantExit(t, 5, "brokerctl: FailedPrecondition: ",
		"no credential stored for app partner", "brokerctl credential set --app partner")
	if n := w.idp.TotalTokenRequests(); n != 0 {
		t.Errorf("%d token requests without a credential, want 0", n)
	}
	s.ctl(w.secret, "credential", "set", "--app", "nosuchapp").wantExit(t, 3, "brokerctl: NotFound: ", `app "nosuchapp" is not configured`)

	r := s.ctl(w.secret, "credential", "set", "--app", "partner")
	r.wantExit(t, 0)
	if !regexp.MustCompile(`^credential for app partner stored \(verified with tenant (northwind|woodgrove)\)\n$`).MatchString(r.stdout) {
		t.Errorf("%v; want the stored-and-verified line", r)
	}

	// By name, by tenant id (any case) and by domain.
	var got []string
	for _, q := range []struct{ tenant, id string }{
		{"northwind", w.tenants["northwind"]},
		{w.tenants["woodgrove"], w.tenants["woodgrove"]},
		{strings.ToUpper(w.tenants["woodgrove"]), w.tenants["woodgrove"]},
		{"northwind.onmicrosoft.com", w.tenants["northwind"]},
	} {
		tok := s.get(q.tenant)
		wantTenant(t, tok, q.id)
		got = append(got, tok)
	}
	list := s.waitStates(map[string]brokerv1.TenantState{
		"northwind": brokerv1.TenantState_TENANT_STATE_READY,
		"woodgrove": brokerv1.TenantState_TENANT_STATE_READY,
	})
	for name, id := range w.tenants {
		if list[name].GetTenantId() != id || list[name].GetLastError() != "" {
			t.Errorf("%s = %v", name, list[name])
		}
	}
	s.ctl("", "tenants").wantExit(t, 0)

	issued := w.idp.Issued()
	for _, tok := range got {
		if !slices.Contains(issued, tok) {
			t.Errorf("get printed a token the fake Entra ID never issued")
		}
	}
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("brokerd exited %d after SIGTERM, want 0", code)
	}
	// No secret and no token in any log, error or listing.
	s.checkNoLeaks([]string{w.secret}, w.idp.Issued())
}

// keystore = "systemd": brokerd reads the secret systemd passes in
// ($CREDENTIALS_DIRECTORY) and serves with it; credential set is refused
// before anything reaches Entra ID, with how to provision the secret; an
// empty credential file is reported as unusable, not as an outage.
func TestSystemdKeystore(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	w := newConfigWorld(t, s, "systemd", "0e0e0e0e-0000-4000-8000-00000000e001")
	creds := filepath.Join(s.dir, "credentials")
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, w.clientID), []byte(w.secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w.env = append(w.env, "CREDENTIALS_DIRECTORY="+creds)
	p := w.start(s)
	wantTenant(t, s.get("northwind"), w.tenants["northwind"])
	requests := w.idp.TotalTokenRequests()
	s.ctl("new-secret-Q~never-sent-0000000000000", "credential", "set", "--app", "partner").wantExit(t, 5,
		"brokerctl: FailedPrecondition: ", "read-only", "systemd-creds encrypt", "LoadCredentialEncrypted="+w.clientID)
	if got := w.idp.TotalTokenRequests(); got != requests {
		t.Errorf("credential set on a read-only keystore made %d token requests", got-requests)
	}
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("brokerd exited %d after SIGTERM, want 0", code)
	}

	if err := os.WriteFile(filepath.Join(creds, w.clientID), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	w.start(s)
	list := s.waitStates(map[string]brokerv1.TenantState{
		"northwind": brokerv1.TenantState_TENANT_STATE_FAILED,
		"woodgrove": brokerv1.TenantState_TENANT_STATE_FAILED,
	})
	if e := list["woodgrove"].GetLastError(); !strings.Contains(e, "is empty") || !strings.Contains(e, "provision it and restart brokerd") {
		t.Errorf("last error %q does not say the credential file is empty and what to do", e)
	}
	s.ctl("", "get", "--tenant", "northwind").wantExit(t, 5, "brokerctl: FailedPrecondition: ", "is empty")
	s.checkNoLeaks([]string{w.secret, "new-secret-Q~never-sent-0000000000000"}, w.idp.Issued())
}

// Bad command lines and configurations: a clear one-line reason, no
// socket. Configuration errors exit 2, like usage errors, with one line
// naming the file, the line and the key.
func TestBadInput(t *testing.T) {
	t.Parallel()
	tooLong := "/tmp/" + strings.Repeat("s", 150) + ".sock"

	tests := []struct {
		name   string
		config string // written to brokerd.toml and passed with --config when set
		args   []string
		env    []string
		code   int
		subs   []string // in stdout and stderr together
	}{
		{name: "unknown config key",
			config: "authority_host = \"https://login.microsoftonline.com\"\nkeystore = \"memory\"\nrefresh_befor = \"10m\"\n\n[apps.partner]\nclient_id = \"00000000-0000-4000-8000-000000000001\"\n",
			code:   2, subs: []string{"brokerd: ", "brokerd.toml:3:", "refresh_befor"}},
		{name: "unknown key in a table",
			config: "keystore = \"memory\"\n\n[apps.partner]\nclient_id = \"00000000-0000-4000-8000-000000000001\"\nclient_secret = \"x\"\n",
			code:   2, subs: []string{"brokerd.toml:5:", `unknown key "apps.partner.client_secret"`}},
		{name: "http authority",
			config: "authority_host = \"http://login.example.test\"\nkeystore = \"memory\"\n\n[apps.partner]\nclient_id = \"00000000-0000-4000-8000-000000000001\"\n",
			code:   2, subs: []string{"brokerd.toml:1:", "authority_host", "https"}},
		{name: "bare number duration",
			config: "keystore = \"memory\"\nmin_valid = 300\n\n[apps.partner]\nclient_id = \"00000000-0000-4000-8000-000000000001\"\n",
			code:   2, subs: []string{"brokerd: ", "brokerd.toml:2: min_valid: ", `expected a duration string such as "5m", got the integer 300`}},
		{name: "wrong type",
			config: "keystore = \"memory\"\nprefetch_rate = \"fast\"\n",
			code:   2, subs: []string{"brokerd: ", "brokerd.toml:2: prefetch_rate: expected an integer, got a string"}},
		{name: "socket path too long", args: []string{"--dev", "--socket", tooLong},
			code: 1, subs: []string{"brokerd: ", fmt.Sprintf("is %d bytes long", len(tooLong)), "at most 107 bytes"}},
		{name: "BROKERD_SOCKET too long", args: []string{"--dev"}, env: []string{"BROKERD_SOCKET=" + tooLong},
			code: 1, subs: []string{"brokerd: ", fmt.Sprintf("is %d bytes long", len(tooLong)), "BROKERD_SOCKET"}},
		{name: "unknown flag", args: []string{"--bogus"},
			code: 2, subs: []string{"brokerd: unknown flag: --bogus (see brokerd --help)\n"}},
		{name: "Go-style single dash", args: []string{"-config", "/etc/tokenbroker/brokerd.toml"},
			code: 2, subs: []string{"brokerd: -config: long flags take two dashes: --config (see brokerd --help)\n"}},
		{name: "stray argument", args: []string{"--dev", "extra"},
			code: 2, subs: []string{`brokerd: unexpected argument "extra": brokerd takes flags only (see brokerd --help)` + "\n"}},
		{name: "bad log format", args: []string{"--dev", "--log-format", "yaml"},
			code: 2, subs: []string{`brokerd: invalid argument "yaml" for "--log-format" flag: want text or json (see brokerd --help)` + "\n"}},
		{name: "bad log level", args: []string{"--dev", "--log-level", "loud"},
			code: 2, subs: []string{`brokerd: invalid argument "loud" for "--log-level" flag: `, "(see brokerd --help)\n"}},
		{name: "dev with config", args: []string{"--dev", "--config", "/nonexistent.toml"},
			code: 2, subs: []string{"--dev and --config cannot be combined"}},
		{name: "missing config", args: []string{"--config", "/nonexistent/brokerd.toml"},
			code: 2, subs: []string{"brokerd: ", "/nonexistent/brokerd.toml", "no such file"}},
		{name: "help", args: []string{"--help"},
			code: 0, subs: []string{"Usage: brokerd [flags]", "Examples:", "brokerd --dev", "      --config FILE ", "      --log-level level ",
				"      --log-format format ", "      --version ", "  -h, --help "}},
		{name: "short help", args: []string{"-h"}, code: 0, subs: []string{"Usage: brokerd [flags]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSession(t)
			args := tt.args
			if tt.config != "" {
				cfg := filepath.Join(s.dir, "brokerd.toml")
				if err := os.WriteFile(cfg, []byte(tt.config), 0o600); err != nil {
					t.Fatal(err)
				}
				args = []string{"--config", cfg, "--socket", s.socket}
			}
			p := s.brokerd(tt.env, args...)
			if code := p.wait(t); code != tt.code {
				t.Errorf("brokerd %s exited %d, want %d", strings.Join(args, " "), code, tt.code)
			}
			out := p.stdout.String() + p.stderr.String()
			for _, sub := range tt.subs {
				if !strings.Contains(out, sub) {
					t.Errorf("brokerd %s output lacks %q:\n%s", strings.Join(args, " "), sub, out)
				}
			}
			if tt.code != 0 && !strings.Contains(p.stderr.String(), "brokerd: ") {
				t.Errorf("no \"brokerd: \" error line on stderr:\n%s", p.stderr.String())
			}
			if _, err := os.Lstat(s.socket); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a socket was created: %v", err)
			}
			if tt.code == 2 {
				if e := p.stderr.String(); strings.Count(e, "\n") != 1 || !strings.HasPrefix(e, "brokerd: ") || p.stdout.String() != "" {
					t.Errorf("a usage or configuration error is not one line on stderr alone:\nstdout %q\nstderr %q", p.stdout.String(), e)
				}
			}
			if tt.code == 0 && p.stderr.String() != "" {
				t.Errorf("stderr %q, want none", p.stderr.String())
			}
		})
	}

	t.Run("brokerctl usage errors", func(t *testing.T) {
		t.Parallel()
		s := newSession(t)
		s.ctl("", "get", "--tenant", "contoso", "--bogus").wantExit(t, 2, "brokerctl: unknown flag: --bogus (see brokerctl get --help)\n")
		s.ctl("", "tenats").wantExit(t, 2, `brokerctl: unknown command "tenats" for "brokerctl"; did you mean tenants? (see brokerctl --help)`+"\n")
	})

	t.Run("brokerctl socket path too long", func(t *testing.T) {
		t.Parallel()
		s := newSession(t)
		s.ctlAt(tooLong, "", "get", "--tenant", "contoso").wantExit(t, 2,
			"brokerctl: ", fmt.Sprintf("is %d bytes long", len(tooLong)), "at most 107 bytes")
	})
}

// Under socket activation brokerd serves on the socket it is passed and
// creates none of its own.
func TestSocketActivation(t *testing.T) {
	t.Parallel()
	tool, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		testuser.SkipOrFail(t, "systemd-socket-activate is not installed (apt-get install systemd)")
	}
	s := newSession(t)
	own := filepath.Join(s.dir, "own.sock") // where brokerd would listen on its own
	// systemd-socket-activate binds s.socket, waits for the first
	// connection, then execs brokerd (same pid) with LISTEN_FDS=1. It
	// passes on only PATH, HOME, USER, TERM and -E variables.
	p := s.track(startProc(t, childEnv(), tool, "-l", s.socket, "-E", "BROKERD_SOCKET="+own, "--", bin("brokerd"), "--dev"))
	p.waitLog(t, "Listening on "+s.socket)

	tok := s.get("contoso") // this connection starts brokerd
	wantTenant(t, tok, contosoID)
	p.waitServing(t)
	if e := p.stderr.String(); !strings.Contains(e, "socket_activated=true") || !strings.Contains(e, "socket="+s.socket) {
		t.Errorf("brokerd did not log socket_activated=true socket=%s:\n%s", s.socket, e)
	}
	if _, err := os.Lstat(own); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("brokerd created its own socket %s under socket activation: %v", own, err)
	}
	wantTenant(t, s.get("contoso"), contosoID)

	// The socket belongs to the service manager: brokerd stops cleanly and
	// leaves it for the next activation.
	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("brokerd exited %d after SIGTERM, want 0", code)
	}
	if fi, err := os.Lstat(s.socket); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("the activated socket was removed by brokerd: %v", err)
	}
	s.checkNoLeaks([]string{devSecret}, []string{tok})
}

// notifySocket is a datagram socket in the session's directory, standing
// in for the service manager's NOTIFY_SOCKET.
type notifySocket struct {
	t    *testing.T
	path string
	msgs chan string
}

func newNotifySocket(t *testing.T, s *session) *notifySocket {
	t.Helper()
	n := &notifySocket{t: t, path: filepath.Join(s.dir, "notify.sock"), msgs: make(chan string, 16)}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		defer close(n.msgs)
		buf := make([]byte, 4096)
		for {
			k, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// await returns the messages received up to the first that contains want,
// which is the last.
func (n *notifySocket) await(want string) []string {
	n.t.Helper()
	var got []string
	timeout := time.After(deadline)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				n.t.Fatalf("notify socket closed before %s", want)
			}
			got = append(got, m)
			if strings.Contains(m, want) {
				return got
			}
		case <-timeout:
			n.t.Fatalf("no %s on NOTIFY_SOCKET within %v; got %q", want, deadline, got)
		}
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as MONOTONIC_USEC=
// gives it.
func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// last is the last of msgs.
func last(msgs []string) string { return msgs[len(msgs)-1] }

// brokerd tells the service manager READY=1 once every tenant's first
// fetch has finished or failed, STATUS= with the tenants by state,
// WATCHDOG=1 at half of WATCHDOG_USEC, RELOADING=1 and READY=1 around a
// reload, and STOPPING=1 when it stops. brokerd --dev ignores SIGHUP and
// refuses brokerctl reload: it has no configuration file.
func TestSdNotify(t *testing.T) {
	t.Parallel()
	t.Run("dev", func(t *testing.T) {
		t.Parallel()
		s := newSession(t)
		n := newNotifySocket(t, s)
		p := s.brokerd([]string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=1000000"}, "--dev", "--socket", s.socket)
		// READY means every first fetch is done, and serving.
		const status = "STATUS=3 tenants: 2 ready, 0 degraded, 1 failed, 0 without a credential, 0 pending"
		if m := last(n.await("READY=1")); !strings.Contains(m, status) {
			t.Errorf("READY=1 came with %q, want %s", m, status)
		}
		token := s.get("contoso")
		wantTenant(t, token, contosoID)
		n.await("WATCHDOG=1")
		n.await("WATCHDOG=1") // again, half a second later

		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		p.waitLog(t, `msg="SIGHUP ignored: brokerd --dev has no configuration file to reload"`)
		s.ctl("", "reload").wantExit(t, 5, "brokerctl: FailedPrecondition: ", "no configuration file to reload (brokerd --dev)")
		if s.get("contoso") != token {
			t.Error("contoso serves another token after SIGHUP")
		}
		if !p.running() {
			t.Fatalf("brokerd --dev exited %d on SIGHUP", p.code)
		}
		if e := p.stderr.String(); strings.Contains(e, "sd_notify") {
			t.Errorf("brokerd reports a failed notification:\n%s", e)
		}
		if code := p.signal(t, syscall.SIGTERM); code != 0 {
			t.Errorf("brokerd exited %d after SIGTERM, want 0", code)
		}
		for _, m := range n.await("STOPPING=1") {
			if strings.Contains(m, "RELOADING=1") {
				t.Errorf("brokerd --dev sent %q: it reloads nothing", m)
			}
		}
		s.checkNoLeaks([]string{devSecret}, nil)
	})

	t.Run("reload", func(t *testing.T) {
		t.Parallel()
		s := newSession(t)
		n := newNotifySocket(t, s)
		w := newConfigWorld(t, s, "memory", "0b0b0b0b-0000-4000-8000-00000000b001")
		p := s.brokerd(append(w.env, "NOTIFY_SOCKET="+n.path), "--config", w.config, "--socket", s.socket)
		n.await("READY=1")
		// A refused reload ends with READY=1 too: the old configuration
		// serves.
		for _, how := range []string{"SIGHUP", "brokerctl reload", "refused brokerctl reload"} {
			before := monotonicUsec(t)
			switch how {
			case "SIGHUP":
				if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
					t.Fatal(err)
				}
			case "brokerctl reload":
				s.ctl("", "reload").wantExit(t, 0)
			default:
				w.write(t, "prefetch_rate = 7")
				s.ctl("", "reload").wantExit(t, 5, "prefetch_rate")
			}
			m := last(n.await("RELOADING=1"))
			after := monotonicUsec(t)
			if u := regexp.MustCompile(`(?m)^MONOTONIC_USEC=([0-9]+)$`).FindStringSubmatch(m); u == nil {
				t.Errorf("%s: %q, want RELOADING=1 with MONOTONIC_USEC=", how, m)
			} else if at, _ := strconv.ParseInt(u[1], 10, 64); at < before || at > after {
				t.Errorf("%s: MONOTONIC_USEC=%d is not between %d and %d, the monotonic clock before the reload and after RELOADING=1", how, at, before, after)
			}
			if m = last(n.await("READY=1")); strings.Contains(m, "RELOADING=1") {
				t.Errorf("%s: %q: READY=1 in the message of RELOADING=1", how, m)
			}
		}
		if code := p.signal(t, syscall.SIGTERM); code != 0 {
			t.Errorf("brokerd exited %d after SIGTERM, want 0", code)
		}
		n.await("STOPPING=1")
		s.checkNoLeaks([]string{w.secret}, nil)
	})
}

// requireSecretService skips (or, in CI, fails) unless secret-tool can store
// and clear an item: a reachable, unlocked Secret Service.
func requireSecretService(t *testing.T) string {
	t.Helper()
	tool, err := exec.LookPath("secret-tool")
	if err != nil {
		testuser.SkipOrFail(t, "secret-tool is not installed (apt-get install libsecret-tools)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	probe := "process-test-probe-" + strings.ToLower(rand.Text())
	store := exec.CommandContext(ctx, tool, "store", "--label=tokenbroker process test probe", "service", "tokenbroker-probe", "username", probe)
	store.Stdin = strings.NewReader("probe")
	if out, err := store.CombinedOutput(); err != nil {
		testuser.SkipOrFail(t, "no usable Secret Service: secret-tool store: %v: %s", err, bytes.TrimSpace(out))
	}
	if out, err := exec.CommandContext(ctx, tool, "clear", "service", "tokenbroker-probe", "username", probe).CombinedOutput(); err != nil {
		t.Fatalf("secret-tool clear: %v: %s", err, out)
	}
	return tool
}

// storedSecret is the client secret in a keystore value (brokerd's stored
// form, or a bare secret); "" when it holds none.
func storedSecret(v []byte) string {
	c, err := keystore.Decode(keystore.NewSecret(string(v)))
	if err != nil || c.Kind != keystore.KindSecret {
		return ""
	}
	return c.Value.Reveal()
}

// keystore = "keyring": credential set writes the Secret Service item
// other tools see, and a restarted brokerd reads it back.
func TestKeyringKeystore(t *testing.T) {
	t.Parallel()
	tool := requireSecretService(t)
	s := newSession(t)
	// A client id of its own, so parallel or earlier runs cannot collide.
	clientID := fmt.Sprintf("%08x-0000-4000-8000-%012x", mrand.Uint32(), mrand.Uint64()&0xffffffffffff)
	t.Cleanup(func() {
		out, err := exec.Command(tool, "clear", "service", "tokenbroker", "username", clientID).CombinedOutput()
		if err != nil {
			t.Errorf("secret-tool clear: %v: %s", err, out)
		}
	})
	w := newConfigWorld(t, s, "keyring", clientID)

	p := w.start(s)
	if e := p.stderr.String(); !strings.Contains(e, "keystore=keyring") {
		t.Errorf("serving line does not say keystore=keyring:\n%s", e)
	}
	s.ctl("", "get", "--tenant", "northwind").wantExit(t, 5, "brokerctl: FailedPrecondition: ",
		"no credential stored for app partner", "keyring", "brokerctl credential set --app partner")

	s.ctl(w.secret+"\n", "credential", "set", "--app", "partner").wantExit(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, "lookup", "service", "tokenbroker", "username", clientID).Output()
	if err != nil {
		t.Fatalf("secret-tool lookup service tokenbroker username %s: %v", clientID, err)
	}
	if got := storedSecret(out); got != w.secret {
		t.Errorf("the keyring item holds %d bytes, not the secret given to credential set", len(out))
	}
	wantTenant(t, s.get("northwind"), w.tenants["northwind"])

	if code := p.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("brokerd exited %d after SIGTERM, want 0", code)
	}
	// A new brokerd finds the credential in the keyring.
	w.start(s)
	wantTenant(t, s.get("woodgrove"), w.tenants["woodgrove"])
	wantTenant(t, s.get("northwind"), w.tenants["northwind"])
	s.waitStates(map[string]brokerv1.TenantState{
		"northwind": brokerv1.TenantState_TENANT_STATE_READY,
		"woodgrove": brokerv1.TenantState_TENANT_STATE_READY,
	})
	s.checkNoLeaks([]string{w.secret}, w.idp.Issued())
}
