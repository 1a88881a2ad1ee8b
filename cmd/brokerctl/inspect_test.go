package main

import (
	"encoding/base64"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// noToken fails the test if r shows any token w's fake Entra ID issued,
// or any part of one.
func noToken(t *testing.T, w *brokertest.World, r result) {
	t.Helper()
	for _, tok := range w.IdP.Issued() {
		for _, part := range strings.Split(tok, ".") {
			if strings.Contains(r.stdout, part) || strings.Contains(r.stderr, part) {
				t.Fatalf("inspect printed (part of) a token:\n%s%s", r.stdout, r.stderr)
			}
		}
	}
}

// inspect shows the claims of the tenant's current token, never the token;
// a token with every required role passes, one that lacks some gets a
// warning naming them and the consent link, and exit status 5.
func TestInspect(t *testing.T) {
	w := brokertest.NewWorld(t, 2)
	w.Apps[0].Extra = []string{`required_roles = ["Alert.Read.All", "Machine.Read.All"]`}
	w.IdP.AddTenant(entratest.Tenant{ID: brokertest.TenantID(1), Domains: []string{"tenant1.onmicrosoft.com"},
		ConsentedApps: []string{w.ClientID}, Roles: []string{"Alert.Read.All"}})
	sock := serveWorld(t, w)

	// On the real clock, as brokerd's.
	var stdout, stderr strings.Builder
	code := newCLI(strings.NewReader(""), &stdout, &stderr).execute([]string{"--socket", sock, "inspect", "--tenant", "tenant0.onmicrosoft.com"})
	r := result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	noToken(t, w, r)
	if r.code != exitOK || r.stderr != "" {
		t.Fatalf("inspect tenant0: %+v, want exit 0 and no warning", r)
	}
	wantLines := []string{
		`^tenant +tenant0 \(` + brokertest.TenantID(0) + `\)$`,
		`^app +partner \(` + w.ClientID + `\)$`,
		`^tid +` + brokertest.TenantID(0) + `$`,
		`^aud +https://api\.securitycenter\.microsoft\.com$`,
		`^appid +` + w.ClientID + `$`,
		`^roles +Alert\.Read\.All Machine\.Read\.All$`,
		`^iat +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \((now|[0-9hms]+ ago)\)$`,
		`^exp +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in [0-9hms]+\)$`,
	}
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != len(wantLines) {
		t.Fatalf("inspect printed %d lines, want %d:\n%s", len(lines), len(wantLines), r.stdout)
	}
	for i, re := range wantLines {
		if !regexp.MustCompile(re).MatchString(lines[i]) {
			t.Errorf("line %d = %q, want %s", i+1, lines[i], re)
		}
	}

	r = runCLI(t, "", "--socket", sock, "inspect", "--tenant", "tenant1")
	noToken(t, w, r)
	consent := w.IdP.URL() + "/" + brokertest.TenantID(1) + "/adminconsent?client_id=" + w.ClientID
	wantErr := "brokerctl: warning: the token lacks role Machine.Read.All that apps.partner.required_roles names: add the application permission to the app registration and have an administrator of tenant tenant1 grant admin consent again: " + consent + "\n" +
		"brokerctl: FailedPrecondition: the token of tenant tenant1 does not carry what the configuration expects (see the warning above)\n"
	if r.code != exitMustAct || r.stderr != wantErr || !strings.Contains(r.stdout, "\nroles   Alert.Read.All\n") {
		t.Errorf("inspect tenant1: %+v\nwant exit 5, its claims and stderr\n%s", r, wantErr)
	}
}

// A token whose tid or appid is not the tenant's or the app's gets a
// warning each; a claim's control characters never reach the terminal.
func TestInspectMismatch(t *testing.T) {
	const tenantID = "11111111-2222-3333-4444-555555555555"
	payload, _ := json.Marshal(map[string]any{
		"tid": "99999999-0000-0000-0000-000000000000", "aud": "https://evil\x1b[2J.example", "appid": "00000000-0000-0000-0000-0000000000aa",
		"roles": []string{"Alert.Read.All"}, "iat": testNow.Add(-5 * time.Minute).Unix(), "exp": testNow.Add(55 * time.Minute).Unix(),
	})
	token := "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(payload) + ".c2lnbmF0dXJl"
	b := &brokertest.FakeBroker{
		GetResp: &brokerv1.GetTokenResponse{AccessToken: token, TokenType: "Bearer",
			ExpiresAt: timestamppb.New(testNow.Add(55 * time.Minute)), TenantId: tenantID},
		Tenants: []*brokerv1.TenantStatus{{Name: "contoso", TenantId: tenantID, App: "partner"}},
		Apps: []*brokerv1.AppStatus{{Name: "partner", ClientId: "0a0a0a0a-0000-4000-8000-00000000a001",
			AuthorityHost: "https://login.microsoftonline.com", RequiredRoles: []string{"Alert.Read.All"}}},
	}
	sock := brokertest.Serve(t, b)

	r := runCLI(t, "", "--socket", sock, "inspect", "--tenant", "contoso")
	for _, part := range strings.Split(token, ".") {
		if strings.Contains(r.stdout+r.stderr, part) {
			t.Fatalf("inspect printed (part of) the token: %+v", r)
		}
	}
	wantOut := "tenant  contoso (" + tenantID + ")\n" +
		"app     partner (0a0a0a0a-0000-4000-8000-00000000a001)\n" +
		"tid     99999999-0000-0000-0000-000000000000\n" +
		"aud     https://evil?[2J.example\n" +
		"appid   00000000-0000-0000-0000-0000000000aa\n" +
		"roles   Alert.Read.All\n" +
		"iat     2026-03-01T11:55:00Z (5m0s ago)\n" +
		"exp     2026-03-01T12:55:00Z (in 55m0s)\n"
	wantErr := `brokerctl: warning: the token's tid "99999999-0000-0000-0000-000000000000" is not tenant contoso's id ` + tenantID + "\n" +
		`brokerctl: warning: the token was issued to app "00000000-0000-0000-0000-0000000000aa", not to app partner's client id 0a0a0a0a-0000-4000-8000-00000000a001` + "\n" +
		"brokerctl: FailedPrecondition: the token of tenant contoso does not carry what the configuration expects (see the warnings above)\n"
	if r.code != exitMustAct || r.stdout != wantOut || r.stderr != wantErr {
		t.Errorf("inspect = %+v\nwant exit 5, stdout\n%s\nstderr\n%s", r, wantOut, wantErr)
	}
}
