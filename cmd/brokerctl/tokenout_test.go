package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// Each --output format of get, byte for byte: json has its keys in the
// documented order, expires_on an integer of Unix seconds, expires_at RFC
// 3339 in UTC, and scopes an array (empty, never null), on one line.
func TestGetOutputFormats(t *testing.T) {
	const token = "eyJ0eXAiOiJKV1QifQ.eyJ0aWQiOiJ0MSJ9.c2ln"
	exp := time.Date(2026, 3, 1, 13, 0, 0, 750_000_000, time.FixedZone("CET", 3600))
	resp := &brokerv1.GetTokenResponse{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresAt:   timestamppb.New(exp),
		TenantId:    "11111111-2222-3333-4444-555555555555",
		Scopes:      []string{"https://graph.microsoft.com/.default?a=1&b=<2>"},
	}
	sock := brokertest.Serve(t, &brokertest.FakeBroker{GetResp: resp})
	tests := []struct {
		args []string
		want string
	}{
		{nil, token + "\n"},
		{[]string{"--output", "token"}, token + "\n"},
		{[]string{"--output", "header"}, "Authorization: Bearer " + token + "\n"},
		{[]string{"-o", "json"}, `{"access_token":"` + token + `","expires_on":1772366400,"expires_at":"2026-03-01T12:00:00Z",` +
			`"tenant_id":"11111111-2222-3333-4444-555555555555","scopes":["https://graph.microsoft.com/.default?a=1&b=<2>"]}` + "\n"},
	}
	for _, tt := range tests {
		r := runCLI(t, "", append([]string{"--socket", sock, "get", "--tenant", "contoso"}, tt.args...)...)
		if r.code != 0 || r.stdout != tt.want || r.stderr != "" {
			t.Errorf("get %v = %+v\nwant stdout %q", tt.args, r, tt.want)
		}
	}

	// What a script's JSON parser sees.
	r := runCLI(t, "", "--socket", sock, "get", "--tenant", "contoso", "--output", "json")
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.UseNumber()
	var got map[string]any
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if n, ok := got["expires_on"].(json.Number); !ok || n.String() != "1772366400" {
		t.Errorf("expires_on = %#v, want the integer 1772366400", got["expires_on"])
	}
	if at, err := time.Parse(time.RFC3339, got["expires_at"].(string)); err != nil || at.Unix() != 1772366400 {
		t.Errorf("expires_at = %v (%v), want the same second as expires_on", got["expires_at"], err)
	}
	if strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("json output is not one line: %q", r.stdout)
	}

	// No scopes in the answer: an empty array, not null.
	sock = brokertest.Serve(t, &brokertest.FakeBroker{GetResp: &brokerv1.GetTokenResponse{AccessToken: "tok", ExpiresAt: timestamppb.New(exp)}})
	r = runCLI(t, "", "--socket", sock, "get", "--tenant", "contoso", "-o", "json")
	if !strings.HasSuffix(r.stdout, `"tenant_id":"","scopes":[]}`+"\n") {
		t.Errorf("json without scopes = %q", r.stdout)
	}
}

// get's help shows the header form for curl, and every --output value.
func TestGetHelpShowsHeaderForm(t *testing.T) {
	r := runCLI(t, "", "get", "--help")
	for _, want := range []string{
		"brokerctl get --tenant contoso --output header |\n    curl -sS -H @- ",
		"--watch --output json",
		"token, json or header",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("get --help lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "printf 'Authorization") {
		t.Error("get --help still builds the header with printf")
	}
}

// --timeout bounds the wait for a watch's first line: a brokerd that sends
// nothing is reported like a GetToken that times out.
func TestGetWatchFirstLineTimeout(t *testing.T) {
	sock := brokertest.Serve(t, &brokertest.FakeBroker{WatchBlock: true})
	r := runCLI(t, "", "--socket", sock, "--timeout", "300ms", "get", "--tenant", "contoso", "--watch")
	if r.code != exitUnavailable || r.stdout != "" ||
		r.stderr != "brokerctl: DeadlineExceeded: brokerd sent no token within --timeout 300ms (raise --timeout; `brokerctl tenants` shows each tenant's state)\n" {
		t.Errorf("get --watch = %+v", r)
	}
}
