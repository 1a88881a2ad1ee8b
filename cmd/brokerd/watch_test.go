package main_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// tokenLineRE is one line of `get --output json`, keys in their order.
var tokenLineRE = regexp.MustCompile(`^\{"access_token":"[^"]+","expires_on":[0-9]+,"expires_at":"[^"]+","tenant_id":"[^"]+","scopes":\[[^]]*\]\}$`)

type tokenLine struct {
	AccessToken string   `json:"access_token"`
	ExpiresOn   int64    `json:"expires_on"`
	ExpiresAt   string   `json:"expires_at"`
	TenantID    string   `json:"tenant_id"`
	Scopes      []string `json:"scopes"`
}

// waitLines waits until the running process p has printed at least n whole
// lines on stdout, and returns them all.
func waitLines(t *testing.T, p *proc, n int) []string {
	t.Helper()
	var lines []string
	brokertest.WaitFor(t, "the watch's lines", func() bool {
		out := p.stdout.String()
		lines = strings.Split(out, "\n")
		lines = lines[:len(lines)-1] // the part after the last newline
		if len(lines) >= n {
			return true
		}
		if !p.running() {
			t.Fatalf("%s exited with %d after %d lines; stderr:\n%s", p.name, p.code, len(lines), p.stderr.String())
		}
		return false
	})
	return lines
}

// `brokerctl get --watch` against a real brokerd with 6-second tokens:
// the current token at once, as a JSON line; a refresh that fails is one
// line on stderr while the watch goes on; the retry's token is the next
// line. SIGINT ends the watch with 0, and a brokerd that stops ends it with
// 6 and one line on stderr.
func TestGetWatch(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	w := newConfigWorld(t, s, "memory", "0e0e0e0e-0000-4000-8000-00000000e001")
	w.write(t, `min_valid = "1s"`)
	// brokerd refreshes each token 2.4 to 3 s after issue.
	w.idp.SetLifetime(6 * time.Second)
	d := w.start(s)
	s.ctl(w.secret, "credential", "set", "--app", "partner").wantExit(t, 0)
	northwind := w.tenants["northwind"]

	watch := startProc(t, childEnv(), bin("brokerctl"), "--socket", s.socket, "get", "--tenant", "northwind", "--watch", "--output", "json")
	waitLines(t, watch, 1)
	// The next refresh fails once (the IdP answers 503), its retry works.
	// A refresh may land before the fault is set: wait for the failure
	// itself, then for the line of the retry after it.
	w.idp.SetFault(northwind, &entratest.Fault{Status: 503, Times: 1})
	brokertest.WaitFor(t, "the failed refresh on stderr", func() bool { return strings.Contains(watch.stderr.String(), "Unavailable") })
	lines := waitLines(t, watch, len(waitLines(t, watch, 1))+1)
	if code := watch.signal(t, syscall.SIGINT); code != 0 {
		t.Errorf("watch exited %d after SIGINT, want 0", code)
	}
	stderr := watch.stderr.String()
	if !strings.HasPrefix(stderr, "brokerctl: Unavailable: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, "next attempt at") {
		t.Errorf("stderr = %q, want one line, the failed refresh", stderr)
	}
	lines = strings.Split(strings.TrimSuffix(watch.stdout.String(), "\n"), "\n")
	var prev tokenLine
	issued := w.idp.Issued()
	for i, line := range lines {
		if !tokenLineRE.MatchString(line) {
			t.Fatalf("line %d is not a token JSON object with its keys in order: %.80q", i+1, line)
		}
		var tl tokenLine
		if err := json.Unmarshal([]byte(line), &tl); err != nil {
			t.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339, tl.ExpiresAt)
		if err != nil || at.Unix() != tl.ExpiresOn {
			t.Errorf("line %d: expires_at %s is not expires_on %d (%v)", i+1, tl.ExpiresAt, tl.ExpiresOn, err)
		}
		if tl.TenantID != northwind || !slices.Contains(issued, tl.AccessToken) {
			t.Errorf("line %d: tenant %s, or a token the IdP never issued", i+1, tl.TenantID)
		}
		wantTenant(t, tl.AccessToken, northwind)
		if i > 0 && (tl.AccessToken == prev.AccessToken || tl.ExpiresOn <= prev.ExpiresOn) {
			t.Errorf("line %d: the same token again, or one expiring no later (%d after %d)", i+1, tl.ExpiresOn, prev.ExpiresOn)
		}
		prev = tl
	}

	// brokerd stops: the watch ends with 6.
	watch = startProc(t, childEnv(), bin("brokerctl"), "--socket", s.socket, "get", "--tenant", "northwind", "--watch", "-o", "header")
	if line := waitLines(t, watch, 1)[0]; !strings.HasPrefix(line, "Authorization: Bearer eyJ") {
		t.Errorf("header line %.30q", line)
	}
	if code := d.signal(t, syscall.SIGTERM); code != 0 {
		t.Errorf("brokerd exited %d after SIGTERM, want 0", code)
	}
	if code := watch.wait(t); code != 6 {
		t.Errorf("watch exited %d when brokerd stopped, want 6", code)
	}
	if e := watch.stderr.String(); !strings.HasPrefix(e, "brokerctl: Unavailable: ") || strings.Count(e, "\n") != 1 || jwtRE.MatchString(e) {
		t.Errorf("stderr = %q, want one line", e)
	}
	s.checkNoLeaks([]string{w.secret}, w.idp.Issued())
}
