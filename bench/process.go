//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// binaries are the programs the process benchmarks run, built once.
type binaries struct {
	brokerd, brokerctl, healthprobe, loadclient string
}

// buildBinaries builds brokerd, brokerctl and the two bench helpers into
// dir with `go build` from the module root, exactly as `make build` does:
// nothing is timed through `go run`.
func buildBinaries(ctx context.Context, goTool, dir string) (binaries, error) {
	out, err := exec.CommandContext(ctx, goTool, "env", "GOMOD").Output()
	if err != nil {
		return binaries{}, fmt.Errorf("%s env GOMOD: %w", goTool, err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return binaries{}, errors.New("not inside the tokenbroker module: run from the repository (make bench)")
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-o", dir+string(filepath.Separator),
		"./cmd/brokerd", "./cmd/brokerctl", "./bench/healthprobe", "./bench/loadclient")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return binaries{}, fmt.Errorf("go build: %v\n%s", err, out)
	}
	return binaries{
		brokerd:     filepath.Join(dir, "brokerd"),
		brokerctl:   filepath.Join(dir, "brokerctl"),
		healthprobe: filepath.Join(dir, "healthprobe"),
		loadclient:  filepath.Join(dir, "loadclient"),
	}, nil
}

// daemonLog is -daemon-log: a file for brokerd's warnings, or "".
var daemonLog string

// daemon is a brokerd process.
type daemon struct {
	cmd    *exec.Cmd
	socket string
	stderr *os.File // brokerd's log, kept for error messages
	done   chan struct{}
	err    error // from Wait, once done is closed
}

// startDaemon runs brokerd with the configuration doc (written to dir) on
// a socket in dir, trusting the fake IdP's certificate (written to dir and
// passed through SSL_CERT_FILE, as a deployment against a private CA
// would), and waits until it answers.
//
// brokerd logs at error level into a file in dir, or, when daemonLog is
// set (-daemon-log), at warn level into that file, kept for diagnosis.
func startDaemon(ctx context.Context, bin binaries, dir, doc string, idp *entratest.Server) (*daemon, error) {
	certFile := filepath.Join(dir, "idp.pem")
	if err := os.WriteFile(certFile, idp.CertPEM(), 0o600); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "brokerd.toml")
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		return nil, err
	}
	logPath, level := filepath.Join(dir, "brokerd.log"), "error"
	if daemonLog != "" {
		logPath, level = daemonLog, "warn"
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	d := &daemon{socket: filepath.Join(dir, "brokerd.sock"), stderr: logf, done: make(chan struct{})}
	d.cmd = exec.Command(bin.brokerd, "--config", cfgPath, "--socket", d.socket, "--log-level", level)
	d.cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+certFile)
	d.cmd.Stderr = logf
	// brokerd dies with this program, even if this program is killed.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	err = poll(ctx, 30*time.Second, 20*time.Millisecond, func() (bool, error) {
		select {
		case <-d.done:
			return false, fmt.Errorf("brokerd exited: %v; log: %s", d.err, d.log())
		default:
		}
		_, err := os.Stat(d.socket)
		return err == nil, nil
	})
	if err != nil {
		d.stop()
		return nil, err
	}
	return d, nil
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// log returns the end of brokerd's log.
func (d *daemon) log() string {
	b, _ := os.ReadFile(d.stderr.Name())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// stop ends brokerd with SIGTERM, or SIGKILL after 5 seconds.
func (d *daemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	d.stderr.Close()
}

// setCredential runs `brokerctl credential set` with the secret on stdin,
// as an operator would.
func setCredential(ctx context.Context, bin binaries, socket string) error {
	cmd := exec.CommandContext(ctx, bin.brokerctl, "--socket", socket, "--timeout", "60s", "credential", "set", "--app", appName)
	cmd.Stdin = strings.NewReader(secret + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("brokerctl credential set: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// countStates asks brokerd for every tenant's state.
func countStates(ctx context.Context, c *client.Client) (map[brokerv1.TenantState]int, []*brokerv1.TenantStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	list, err := c.ListTenants(ctx)
	if err != nil {
		return nil, nil, err
	}
	n := map[brokerv1.TenantState]int{}
	for _, t := range list {
		n[t.GetState()]++
	}
	return n, list, nil
}

// poll calls cond every interval until it is true, fails, or limit passes.
func poll(ctx context.Context, limit, interval time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still not done after %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// procStatusKB reads a "Field:   N kB" line (e.g. VmRSS) of /proc/PID/status.
func procStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// userHZ is the unit of the CPU times in /proc/PID/stat. The kernel
// always reports them in USER_HZ, which is 100 on Linux.
const userHZ = 100

// procCPU returns the CPU time (user + system) a process has used, from
// fields 14 and 15 of /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields from after its closing parenthesis (field 3 onwards).
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// timeRun runs a program to completion and returns its wall time, from
// fork to exit, failing unless it exits 0 and its output passes check.
func timeRun(ctx context.Context, check func(stdout []byte) error, name string, args ...string) (time.Duration, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s: %v: %s", filepath.Base(name), err, bytes.TrimSpace(stderr.Bytes()))
	}
	if check != nil {
		if err := check(stdout.Bytes()); err != nil {
			return 0, fmt.Errorf("%s: %v", filepath.Base(name), err)
		}
	}
	return d, nil
}

// isToken checks that brokerctl get printed a JWT and a newline.
func isToken(out []byte) error {
	if !bytes.HasSuffix(out, []byte("\n")) || bytes.Count(out, []byte(".")) != 2 {
		return fmt.Errorf("printed %d bytes that are not a token and a newline", len(out))
	}
	return nil
}

// measureProcesses alternates runs of `brokerctl get` and healthprobe
// against the same brokerd (ABBA) and returns the median wall time of each.
func measureProcesses(ctx context.Context, bin binaries, socket string, runs int) (ctl, probe time.Duration, err error) {
	getArgs := []string{"--socket", socket, "get", "--tenant", tenantName(0)}
	runCtl := func() (time.Duration, error) { return timeRun(ctx, isToken, bin.brokerctl, getArgs...) }
	runProbe := func() (time.Duration, error) { return timeRun(ctx, nil, bin.healthprobe, socket) }
	// Unmeasured: page cache, brokerd's first connections.
	for range 3 {
		if _, err := runCtl(); err != nil {
			return 0, 0, err
		}
		if _, err := runProbe(); err != nil {
			return 0, 0, err
		}
	}
	var ctls, probes []time.Duration
	for i := range runs {
		order := []func() error{
			func() error { d, err := runCtl(); ctls = append(ctls, d); return err },
			func() error { d, err := runProbe(); probes = append(probes, d); return err },
		}
		if !abba(i) {
			order[0], order[1] = order[1], order[0]
		}
		for _, f := range order {
			if err := f(); err != nil {
				return 0, 0, err
			}
		}
	}
	return percentile(ctls, 50), percentile(probes, 50), nil
}

// smallResult is what measureSmallDaemon found.
type smallResult struct {
	rss        int64 // kB, brokerd with one tenant and its token
	ctl, probe time.Duration
}

// measureSmallDaemon runs a real brokerd with one tenant, stores the
// credential with brokerctl, waits for the token, reads brokerd's RSS and
// then times `brokerctl get` against healthprobe on its socket.
func measureSmallDaemon(ctx context.Context, bin binaries, runs int) (r smallResult, err error) {
	idp, err := newIdP(1)
	if err != nil {
		return r, err
	}
	defer idp.Close()
	dir, err := os.MkdirTemp("", "bb")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	d, err := startDaemon(ctx, bin, dir, configTOML(idp.URL(), 1), idp)
	if err != nil {
		return r, err
	}
	defer d.stop()
	if err := setCredential(ctx, bin, d.socket); err != nil {
		return r, err
	}
	c, err := client.Dial(d.socket)
	if err != nil {
		return r, err
	}
	defer c.Close()
	err = poll(ctx, 30*time.Second, 100*time.Millisecond, func() (bool, error) {
		n, _, err := countStates(ctx, c)
		return n[brokerv1.TenantState_TENANT_STATE_READY] == 1, err
	})
	if err != nil {
		return r, fmt.Errorf("waiting for the token: %w", err)
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return r, err
	}
	if r.rss, err = procStatusKB(d.pid(), "VmRSS"); err != nil {
		return r, err
	}
	progress("process: brokerd with 1 tenant, RSS %d kB; timing %d runs each of brokerctl get and healthprobe", r.rss, runs)
	r.ctl, r.probe, err = measureProcesses(ctx, bin, d.socket, runs)
	return r, err
}
