package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// migo builds testdata/migo, the child program of the exec tests: the Go
// Azure SDK's ManagedIdentityCredential and DefaultAzureCredential, built
// from their published module (a module of its own, so that tokenbroker
// does not depend on the SDK).
var migo = sync.OnceValues(func() (string, error) {
	out := filepath.Join(binDir, "migo")
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", out, ".")
	build.Dir = filepath.Join("testdata", "migo")
	if b, err := build.CombinedOutput(); err != nil {
		return "", errors.New("building testdata/migo: " + err.Error() + "\n" + string(b))
	}
	return out, nil
})

// lines decodes stdout as one JSON object per line.
func lines(t *testing.T, r result) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: line %q is not a JSON object: %v", r, l, err)
		}
		out = append(out, m)
	}
	return out
}

// brokerctl exec runs an unmodified Azure SDK program (Go azidentity) that
// gets the tenant's tokens through the managed-identity endpoint, and
// follows brokerd's refreshes; the endpoint refuses requests without the
// secret header, to another Host or with another method, answers a
// forbidden resource with brokerd's message, which the SDK shows; CMD's
// exit status and a SIGTERM come back; the endpoint is gone with CMD.
func TestExec(t *testing.T) {
	t.Parallel()
	go migo() // linking takes a few seconds: meanwhile, start brokerd
	const (
		contoso  = "c0c0c0c0-0000-4000-8000-0000000e0001"
		defender = "https://api.securitycenter.microsoft.com"
		graph    = "https://graph.microsoft.com"
	)
	s := newSession(t)
	w := newConfigWorld(t, s, "memory", "0e0e0e0e-0000-4000-8000-00000000e001")
	w.Apps[0].Extra = []string{`allowed_scopes = ["` + graph + `"]`}
	w.AddTenant("contoso", contoso, "partner", true)
	// Five-second tokens (brokerd takes no shorter ones), refreshed two or
	// three seconds before expiry.
	w.write(t, `min_valid = "1s"`)
	w.idp.SetLifetime(5 * time.Second)
	// What would lead DefaultAzureCredential elsewhere, and a wrong tenant.
	s.ctlEnv = []string{"AZURE_CLIENT_ID=99999999-0000-4000-8000-000000000009", "AZURE_CLIENT_SECRET=not-the-secret",
		"AZURE_TENANT_ID=99999999-0000-4000-8000-000000000010", "MSI_ENDPOINT=http://127.0.0.1:9/",
		"IDENTITY_SERVER_THUMBPRINT=00", "AZURE_TOKEN_CREDENTIALS=dev"}
	w.start(s)
	s.ctl(w.secret, "credential", "set", "--app", "partner").wantExit(t, 0)
	s.waitStates(map[string]brokerv1.TenantState{"contoso": brokerv1.TenantState_TENANT_STATE_READY})
	mi, err := migo()
	if err != nil {
		t.Fatal(err)
	}

	issued := func() map[string]bool {
		m := map[string]bool{}
		for _, tok := range w.idp.Issued() {
			sum := sha256.Sum256([]byte(tok))
			m[hex.EncodeToString(sum[:])] = true
		}
		return m
	}
	wantToken := func(r result, tok map[string]any, aud string) {
		t.Helper()
		if tok["tid"] != contoso || tok["aud"] != aud || tok["appid"] != w.clientID {
			t.Errorf("%v: token tid %v aud %v appid %v, want %s, %s, %s", r, tok["tid"], tok["aud"], tok["appid"], contoso, aud, w.clientID)
		}
		// brokerd's expiry is the reply's arrival plus expires_in; the
		// fake Entra ID's exp is its issue time plus the same lifetime,
		// in whole seconds: a second may pass in between.
		exp, _ := tok["exp"].(float64)
		on, _ := tok["expires_on"].(float64)
		if d := on - exp; exp == 0 || d < 0 || d > 1 {
			t.Errorf("%v: the SDK's ExpiresOn %v is not the token's exp %v (or a second after it)", r, tok["expires_on"], tok["exp"])
		}
		if sum, _ := tok["sha256"].(string); !issued()[sum] {
			t.Errorf("%v: a token the fake Entra ID never issued", r)
		}
	}

	// The environment: the endpoint and the tenant; nothing that would
	// lead an SDK elsewhere.
	r := s.ctl("", "exec", "--tenant", "contoso", "--", mi, "env")
	r.wantExit(t, 0)
	env := lines(t, r)[0]
	endpoint, _ := env["IDENTITY_ENDPOINT"].(string)
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[0-9]+/msi/token$`).MatchString(endpoint) ||
		env["IDENTITY_HEADER"] != "64 hex digits" || env["AZURE_TENANT_ID"] != contoso || env["AZURE_TOKEN_CREDENTIALS"] != "prod" || len(env) != 4 {
		t.Errorf("%v: CMD's identity environment is %v; want IDENTITY_ENDPOINT, a 64-digit IDENTITY_HEADER, AZURE_TENANT_ID %s and AZURE_TOKEN_CREDENTIALS prod only", r, env, contoso)
	}
	// The endpoint lived as long as CMD.
	if c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(endpoint, "http://"), "/msi/token")); err == nil {
		c.Close()
		t.Errorf("the endpoint %s still accepts connections after CMD exited", endpoint)
	}

	// ManagedIdentityCredential and DefaultAzureCredential, unmodified.
	for _, mode := range []string{"token", "dac"} {
		r := s.ctl("", "exec", "--tenant", "contoso", "--", mi, mode, defender)
		r.wantExit(t, 0)
		wantToken(r, lines(t, r)[0], defender)
	}
	// By tenant id, an allowed_scopes resource.
	r = s.ctl("", "exec", "--tenant", contoso, "--", mi, "token", graph)
	r.wantExit(t, 0)
	wantToken(r, lines(t, r)[0], graph)

	// The SDK asks again and again; brokerd's refresh brings a new token.
	r = s.ctl("", "exec", "--tenant", "contoso", "--", mi, "refresh", defender)
	r.wantExit(t, 0)
	toks := lines(t, r)
	if len(toks) != 2 || toks[0]["sha256"] == toks[1]["sha256"] {
		t.Fatalf("%v: want two different tokens", r)
	}
	wantToken(r, toks[0], defender)
	wantToken(r, toks[1], defender)
	if toks[1]["exp"].(float64) <= toks[0]["exp"].(float64) {
		t.Errorf("%v: the second token does not expire later than the first", r)
	}

	// A resource outside the app's scopes: 403 with brokerd's message,
	// which the SDK's error shows.
	r = s.ctl("", "exec", "--tenant", "contoso", "--", mi, "token", "https://vault.azure.net")
	if r.code != 3 || len(lines(t, r)) != 1 {
		t.Fatalf("%v: want migo's exit 3 and its error", r)
	}
	sdkErr, _ := lines(t, r)[0]["error"].(string)
	for _, want := range []string{"ManagedIdentityCredential authentication failed", "RESPONSE 403", `"error": "access_denied"`,
		`brokerd: PermissionDenied: scope \"https://vault.azure.net/.default\" is not allowed for tenant contoso's app partner`, "apps.partner.allowed_scopes"} {
		if !strings.Contains(sdkErr, want) {
			t.Errorf("the SDK's error lacks %q:\n%s", want, sdkErr)
		}
	}
	// --scope narrows what CMD may get.
	r = s.ctl("", "exec", "--tenant", "contoso", "--scope", graph, "--", mi, "token", defender)
	if sdkErr, _ := lines(t, r)[0]["error"].(string); r.code != 3 || !strings.Contains(sdkErr, "RESPONSE 403") ||
		!strings.Contains(sdkErr, `scope \"`+defender+`/.default\" is not among the scopes this endpoint serves (`+graph+`/.default)`) {
		t.Errorf("%v: want the SDK's 403 naming the scopes served", r)
	}
	r = s.ctl("", "exec", "--tenant", "contoso", "--scope", graph+"/", "--", mi, "token", graph)
	r.wantExit(t, 0)
	wantToken(r, lines(t, r)[0], graph)

	// Raw requests.
	r = s.ctl("", "exec", "--tenant", "contoso", "--", mi, "raw", defender)
	r.wantExit(t, 0)
	want := map[string]struct {
		status int
		error  string
	}{
		"ok":              {200, ""},
		"no header":       {401, "unauthorized"},
		"empty header":    {401, "unauthorized"},
		"wrong header":    {401, "unauthorized"},
		"two headers":     {401, "unauthorized"},
		"evil host":       {403, "invalid_host"},
		"localhost host":  {403, "invalid_host"},
		"post":            {405, "method_not_allowed"},
		"old api-version": {400, "invalid_request"},
		"no resource":     {400, "invalid_request"},
		"user-assigned":   {400, "invalid_request"},
		"bad query":       {400, "invalid_request"},
		"other path":      {404, "not_found"},
	}
	seen := 0
	for _, a := range lines(t, r) {
		name, _ := a["case"].(string)
		wc, ok := want[name]
		if !ok {
			t.Errorf("unexpected case %v", a)
			continue
		}
		seen++
		body, _ := a["body"].(map[string]any)
		if int(a["status"].(float64)) != wc.status || a["content_type"] != "application/json; charset=utf-8" {
			t.Errorf("%s: %v; want status %d, JSON", name, a, wc.status)
		}
		if wc.status == 200 {
			if body["access_token"] != false || body["token_type"] != "Bearer" || body["resource"] != defender ||
				body["client_id"] != w.clientID || body["expires_on"] != "string, integer: true" || len(body) != 5 {
				t.Errorf("%s: the answer is %v; want access_token, expires_on (an integer in a string), resource, token_type Bearer and client_id", name, body)
			}
			continue
		}
		if body["error"] != wc.error || body["error_description"] == "" || len(body) != 2 {
			t.Errorf("%s: body %v; want error %q and a description", name, body, wc.error)
		}
	}
	if seen != len(want) {
		t.Errorf("%d raw cases answered, want %d:\n%s", seen, len(want), r.stdout)
	}

	// CMD's status comes back; a CMD that cannot run is a shell's 127 or
	// 126; an unknown tenant is brokerctl's own error, before CMD runs.
	if r := s.ctl("", "exec", "--tenant", "contoso", "--", mi, "exit", "7"); r.code != 7 || r.stdout != "" || r.stderr != "" {
		t.Errorf("%v; want exit 7 and no output", r)
	}
	s.ctl("", "exec", "--tenant", "contoso", "--", "no-such-command-here").wantExit(t, 127, `cannot run "no-such-command-here"`, "not found")
	plain := filepath.Join(s.dir, "not-executable")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.ctl("", "exec", "--tenant", "contoso", "--", plain).wantExit(t, 126, "permission denied")
	s.ctl("", "exec", "--tenant", "nosuch", "--", mi, "exit", "0").wantExit(t, 3, "NotFound")
	if r := s.ctl("", "exec", "--", mi, "exit", "0"); r.code != 2 || !strings.HasPrefix(r.stderr, `brokerctl: required flag(s) "tenant" not set`) {
		t.Errorf("%v; want exit 2 and the missing --tenant", r)
	}

	// SIGTERM reaches CMD: one that traps it exits with its own status,
	// one that does not is killed by it (128+15).
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{mi, "trap", "42"}, 42},
		{[]string{"sh", "-c", "echo ready; exec sleep 60"}, 128 + int(syscall.SIGTERM)},
	} {
		args := append([]string{"--socket", s.socket, "exec", "--tenant", "contoso", "--"}, c.args...)
		p := s.track(startProc(t, childEnv(), bin("brokerctl"), args...))
		brokertest.WaitFor(t, "CMD to start", func() bool {
			if !p.running() {
				t.Fatalf("%s exited with %d before CMD was ready", p.name, p.code)
			}
			return strings.Contains(p.stdout.String(), "ready\n")
		})
		if code := p.signal(t, syscall.SIGTERM); code != c.code {
			t.Errorf("%s exited %d after SIGTERM, want %d; stdout %q stderr %q", p.name, code, c.code, p.stdout.String(), p.stderr.String())
		}
		if p.stderr.String() != "" {
			t.Errorf("%s wrote on stderr: %q", p.name, p.stderr.String())
		}
	}

	s.checkNoLeaks([]string{w.secret}, w.idp.Issued())
}
