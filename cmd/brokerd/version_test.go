package main_test

import (
	"encoding/json"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// brokerd --version and brokerctl version tell the same build: the lines
// name the program, then its module version, commit, Go version and
// platform, and brokerctl asks the running brokerd for its own over the
// API.
func TestVersion(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	v := s.brokerd(nil, "--version")
	if code := v.wait(t); code != 0 || v.stderr.String() != "" {
		t.Fatalf("brokerd --version exited %d, stderr %q", code, v.stderr.String())
	}
	line := v.stdout.String()
	// The binaries are built by this test's toolchain, from a checkout or
	// not (commit unknown).
	re := regexp.MustCompile(`^brokerd (\S+) commit ([0-9a-f]{12}(\+dirty)?( \(\S+Z\))?|unknown) ` +
		regexp.QuoteMeta(runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH) + "\n$")
	if !re.MatchString(line) {
		t.Fatalf("brokerd --version = %q, want it to match %s", line, re)
	}
	build := strings.TrimPrefix(line, "brokerd ")

	s.devBrokerd()
	r := s.ctl("", "version")
	r.wantExit(t, 0)
	if want := "brokerctl " + build + "brokerd " + build; r.stdout != want {
		t.Errorf("brokerctl version:\n%s\nwant\n%s", r.stdout, want)
	}
}

// --log-format json writes one JSON object a line, every line of the log,
// for log shippers, with no secret or token in any.
func TestLogFormatJSON(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	d := s.brokerd(nil, "--dev", "--socket", s.socket, "--log-format", "json", "--log-level", "debug")
	d.waitLog(t, `"msg":"brokerd serving"`)
	token := s.get("contoso")
	const wrong = "wrong-secret-Q~jsonlogs0000000000000000"
	s.ctl(wrong+"\n", "credential", "set", "--app", "partner").wantExit(t, 5, "AADSTS7000215")
	s.ctl("", "get", "--tenant", "nosuch").wantExit(t, 3)
	if code := d.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("brokerd exited %d", code)
	}

	log := d.stderr.String()
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	var audits int
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Errorf("not a JSON object: %q: %v", l, err)
			continue
		}
		for _, key := range []string{"time", "level", "msg"} {
			if _, ok := rec[key]; !ok {
				t.Errorf("no %q in %q", key, l)
			}
		}
		if rec["msg"] == "audit" && rec["rpc"] == "GetToken" && rec["tenant"] == "contoso" {
			audits++
		}
	}
	if len(lines) < 5 || audits != 1 || !strings.Contains(log, `"level":"DEBUG"`) || !strings.Contains(log, `"msg":"brokerd stopping"`) {
		t.Errorf("want the debug log with contoso's GetToken audited once, and the stop, got %d lines (%d audits):\n%s", len(lines), audits, log)
	}
	s.checkNoLeaks([]string{devSecret, wrong}, []string{token})
}
