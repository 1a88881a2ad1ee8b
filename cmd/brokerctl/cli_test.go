package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// testNow is the clock of every CLI run in these tests.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type result struct {
	code   int
	stdout string
	stderr string
}

// runCLI runs brokerctl in-process with stdin and args.
func runCLI(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := newCLI(strings.NewReader(stdin), &stdout, &stderr)
	c.now = func() time.Time { return testNow }
	code := c.execute(args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestGetPrintsOnlyTheToken(t *testing.T) {
	const token = "eyJ0eXAiOiJKV1QifQ.eyJ0aWQiOiJ0MSJ9.c2ln"
	b := &brokertest.FakeBroker{GetResp: &brokerv1.GetTokenResponse{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresAt:   timestamppb.New(testNow.Add(time.Hour)),
		TenantId:    "11111111-2222-3333-4444-555555555555",
	}}
	sock := brokertest.Serve(t, b)

	r := runCLI(t, "", "--socket", sock, "get", "--tenant", "contoso")
	if r.code != 0 || r.stdout != token+"\n" || r.stderr != "" {
		t.Fatalf("get = %+v, want code 0, stdout exactly the token and a newline, empty stderr", r)
	}
	req := b.GetRequests()[0]
	if req.GetTenant() != "contoso" || req.GetScopes() != nil || req.MinValid != nil {
		t.Errorf("request = %v, want tenant contoso, scopes and min_valid unset", req)
	}
}

func TestGetSendsScopesAndMinValid(t *testing.T) {
	b := &brokertest.FakeBroker{GetResp: &brokerv1.GetTokenResponse{AccessToken: "tok"}}
	sock := brokertest.Serve(t, b)

	r := runCLI(t, "", "get", "--socket", sock, "--tenant", "contoso.onmicrosoft.com",
		"--scope", "https://api.securitycenter.microsoft.com/.default",
		"--scope", "https://graph.microsoft.com/.default", "--min-valid", "30m")
	if r.code != 0 || r.stdout != "tok\n" {
		t.Fatalf("get = %+v", r)
	}
	req := b.GetRequests()[0]
	wantScopes := []string{"https://api.securitycenter.microsoft.com/.default", "https://graph.microsoft.com/.default"}
	if req.GetTenant() != "contoso.onmicrosoft.com" || !slices.Equal(req.GetScopes(), wantScopes) ||
		req.GetMinValid().AsDuration() != 30*time.Minute {
		t.Errorf("request = %v", req)
	}
}

func TestUsageErrors(t *testing.T) {
	b := &brokertest.FakeBroker{GetResp: &brokerv1.GetTokenResponse{AccessToken: "tok"}}
	sock := brokertest.Serve(t, b)

	tests := []struct {
		name     string
		args     []string
		wantLine string // stderr, one line
		help     string // the command whose --help the line points to
	}{
		{"get without --tenant", []string{"get"},
			`brokerctl: required flag(s) "tenant" not set`, "brokerctl get"},
		{"get with empty --tenant", []string{"get", "--tenant", " "},
			"brokerctl: --tenant must not be empty: give the tenant's configured name, tenant id or domain", "brokerctl get"},
		{"get with an empty --scope", []string{"get", "--tenant", "contoso", "--scope", ""},
			"brokerctl: --scope must not be empty", "brokerctl get"},
		{"get with a bad --min-valid", []string{"get", "--tenant", "contoso", "--min-valid", "5"},
			`brokerctl: invalid argument "5" for "--min-valid" flag: time: missing unit in duration "5"`, "brokerctl get"},
		{"get with a negative --min-valid", []string{"get", "--tenant", "contoso", "--min-valid", "-1m"},
			"brokerctl: invalid --min-valid -1m0s: must not be negative", "brokerctl get"},
		{"get with an argument", []string{"get", "--tenant", "contoso", "extra"},
			`brokerctl: unknown command "extra" for "brokerctl get"`, "brokerctl get"},
		{"get with a bad --output", []string{"get", "--tenant", "contoso", "--output", "yaml"},
			`brokerctl: invalid --output "yaml": want token, json or header`, "brokerctl get"},
		{"get --watch with a bad --output", []string{"get", "--tenant", "contoso", "--watch", "-o", "table"},
			`brokerctl: invalid --output "table": want token, json or header`, "brokerctl get"},
		{"tenants with a bad --output", []string{"tenants", "--output", "yaml"},
			`brokerctl: invalid --output "yaml": want table or json`, "brokerctl tenants"},
		{"zero --timeout", []string{"--timeout", "0s", "tenants"},
			"brokerctl: invalid --timeout 0s: must be more than 0", "brokerctl tenants"},
		{"bad --timeout", []string{"--timeout", "soon", "tenants"},
			`brokerctl: invalid argument "soon" for "--timeout" flag: time: invalid duration "soon"`, "brokerctl tenants"},
		{"unknown command", []string{"token"},
			`brokerctl: unknown command "token" for "brokerctl"`, "brokerctl"},
		{"unknown command like one", []string{"tenats"},
			`brokerctl: unknown command "tenats" for "brokerctl"; did you mean tenants?`, "brokerctl"},
		{"a control character in an unknown command", []string{"x\x1b[2Jy"},
			`brokerctl: unknown command "x\x1b[2Jy" for "brokerctl"`, "brokerctl"},
		{"unknown flag", []string{"get", "--tenant", "contoso", "--fresh"},
			"brokerctl: unknown flag: --fresh", "brokerctl get"},
		{"a newline in an unknown flag", []string{"--fr\nesh\x1b"},
			`brokerctl: unknown flag: --fr esh\x1b`, "brokerctl"},
		{"credential set without --app", []string{"credential", "set"},
			`brokerctl: required flag(s) "app" not set`, "brokerctl credential set"},
		{"credential set has no secret flag", []string{"credential", "set", "--app", "partner", "--secret", "hunter2"},
			"brokerctl: unknown flag: --secret", "brokerctl credential set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--socket", sock}, tt.args...)
			r := runCLI(t, "secret-from-stdin\n", args...)
			if r.code != exitUsage {
				t.Errorf("exit status = %d, want %d", r.code, exitUsage)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want empty", r.stdout)
			}
			if want := tt.wantLine + " (see " + tt.help + " --help)\n"; r.stderr != want {
				t.Errorf("stderr = %q\nwant     %q", r.stderr, want)
			}
			if strings.Contains(r.stderr, "hunter2") {
				t.Errorf("stderr repeats the secret given on the command line")
			}
		})
	}
	if n := b.Calls(); n != 0 {
		t.Errorf("usage errors made %d calls to brokerd, want 0", n)
	}
}

func TestExitStatusByCode(t *testing.T) {
	tests := []struct {
		code codes.Code
		want int
	}{
		{codes.InvalidArgument, 2},
		{codes.NotFound, 3},
		{codes.PermissionDenied, 4},
		{codes.Unauthenticated, 4},
		{codes.FailedPrecondition, 5},
		{codes.Unavailable, 6},
		{codes.DeadlineExceeded, 6},
		{codes.ResourceExhausted, 6},
		{codes.Internal, 1},
		{codes.Unknown, 1},
		{codes.Unimplemented, 1},
		{codes.AlreadyExists, 1},
		{codes.Aborted, 1},
		{codes.DataLoss, 1},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			msg := "what to do about " + tt.code.String() + ": see https://example.test/" + tt.code.String()
			b := &brokertest.FakeBroker{GetErr: status.Error(tt.code, msg)}
			sock := brokertest.Serve(t, b)
			r := runCLI(t, "", "--socket", sock, "get", "--tenant", "contoso")
			if r.code != tt.want {
				t.Errorf("exit status = %d, want %d", r.code, tt.want)
			}
			want := "brokerctl: " + tt.code.String() + ": " + msg + "\n"
			if r.stderr != want || r.stdout != "" {
				t.Errorf("stdout %q, stderr %q; want no stdout and stderr %q", r.stdout, r.stderr, want)
			}
		})
	}
}

func TestExitStatusLocalFailures(t *testing.T) {
	dir := brokertest.ShortDir(t)
	missing := filepath.Join(dir, "missing.sock")
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale.sock")
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	lis.SetUnlinkOnClose(false)
	lis.Close()
	slow := brokertest.Serve(t, &brokertest.FakeBroker{GetBlock: true})
	empty := brokertest.Serve(t, &brokertest.FakeBroker{GetResp: &brokerv1.GetTokenResponse{}})

	tests := []struct {
		name   string
		args   []string
		want   int
		stderr string
	}{
		{"brokerd not running", []string{"--socket", missing, "get", "--tenant", "contoso"}, 6,
			"brokerctl: Unavailable: no brokerd socket at " + missing + " (is brokerd running? start it with `brokerd` or `brokerd --dev`)\n"},
		{"stale socket", []string{"--socket", stale, "tenants"}, 6,
			"brokerctl: Unavailable: brokerd is not answering on " + stale + ": connect: connection refused (a socket left by a brokerd that exited? start brokerd again)\n"},
		{"not a socket", []string{"--socket", regular, "tenants"}, 2,
			"brokerctl: InvalidArgument: " + regular + " is not a Unix socket (it is a regular file); point --socket or BROKERD_SOCKET at the socket brokerd listens on\n"},
		{"timeout", []string{"--socket", slow, "--timeout", "200ms", "get", "--tenant", "contoso"}, 6,
			"brokerctl: DeadlineExceeded: brokerd did not answer within --timeout 200ms (raise --timeout; `brokerctl tenants` shows each tenant's state)\n"},
		{"empty token", []string{"--socket", empty, "get", "--tenant", "contoso"}, 1,
			"brokerctl: brokerd answered without a token\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, "", tt.args...)
			if r.code != tt.want || r.stderr != tt.stderr || r.stdout != "" {
				t.Errorf("got %+v\nwant code %d, stderr %q, no stdout", r, tt.want, tt.stderr)
			}
		})
	}
}

func TestCredentialSet(t *testing.T) {
	const secret = "Xy8Q~abc.DEF_ghi-JKL~0123456789mnopqrstu"
	tests := []struct {
		name  string
		stdin string
		want  string // the secret brokerd should receive
	}{
		{"trailing newline", secret + "\n", secret},
		{"trailing CRLF", secret + "\r\n", secret},
		{"no newline", secret, secret},
		{"spaces kept", "  " + secret + " \n", "  " + secret + " "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &brokertest.FakeBroker{SetResp: &brokerv1.SetCredentialResponse{VerifiedWithTenant: "contoso"}}
			sock := brokertest.Serve(t, b)
			r := runCLI(t, tt.stdin, "--socket", sock, "credential", "set", "--app", "partner")
			if r.code != 0 {
				t.Fatalf("credential set = %+v", r)
			}
			if want := "credential for app partner stored (verified with tenant contoso)\n"; r.stdout != want {
				t.Errorf("stdout = %q, want %q", r.stdout, want)
			}
			if r.stderr != "" {
				t.Errorf("stderr = %q, want empty", r.stderr)
			}
			if len(b.SetRequests()) != 1 || b.SetRequests()[0].GetApp() != "partner" || b.SetRequests()[0].GetClientSecret() != tt.want {
				t.Errorf("brokerd received %v, want app partner with secret %q", b.SetRequests(), tt.want)
			}
			assertNoSecret(t, r, secret)
		})
	}
}

func TestCredentialSetNotVerified(t *testing.T) {
	b := &brokertest.FakeBroker{SetResp: &brokerv1.SetCredentialResponse{}}
	r := runCLI(t, "s3cr3t\n", "--socket", brokertest.Serve(t, b), "credential", "set", "--app", "partner")
	want := "credential for app partner stored (not verified: the app has no tenant to verify it with)\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("got %+v, want stdout %q", r, want)
	}
}

func TestCredentialSetRefusesBadInput(t *testing.T) {
	const secret = "Xy8Q~abc.DEF_ghi"
	tests := []struct {
		name   string
		stdin  string
		stderr string
	}{
		{"empty", "", "brokerctl: empty client secret: pipe the secret into stdin, or run on a terminal to be prompted for it\n"},
		{"only a newline", "\n", "brokerctl: empty client secret: pipe the secret into stdin, or run on a terminal to be prompted for it\n"},
		{"only CRLF", "\r\n", "brokerctl: empty client secret: pipe the secret into stdin, or run on a terminal to be prompted for it\n"},
		{"two lines", secret + "\nsecond-line\n", "brokerctl: the client secret on stdin spans several lines; pipe in the secret value only\n"},
		{"two trailing newlines", secret + "\n\n", "brokerctl: the client secret on stdin spans several lines; pipe in the secret value only\n"},
		{"too long", secret + strings.Repeat("x", maxSecretBytes), "brokerctl: stdin holds more than 64 KiB; pipe in the client secret value only\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &brokertest.FakeBroker{SetResp: &brokerv1.SetCredentialResponse{VerifiedWithTenant: "contoso"}}
			r := runCLI(t, tt.stdin, "--socket", brokertest.Serve(t, b), "credential", "set", "--app", "partner")
			if r.code != exitUsage || r.stderr != tt.stderr || r.stdout != "" {
				t.Errorf("got %+v\nwant code 2, stderr %q", r, tt.stderr)
			}
			if n := b.Calls(); n != 0 {
				t.Errorf("brokerd received %d calls, want 0", n)
			}
			assertNoSecret(t, r, secret)
		})
	}
}

func TestCredentialSetRejectedByBrokerd(t *testing.T) {
	const secret = "Xy8Q~wrong.secret_value"
	const msg = "Entra ID rejected the new secret for app partner (AADSTS7000215: invalid client secret); the old one is kept: check that you copied the secret value, not its id"
	b := &brokertest.FakeBroker{SetErr: status.Error(codes.FailedPrecondition, msg)}
	r := runCLI(t, secret+"\n", "--socket", brokertest.Serve(t, b), "credential", "set", "--app", "partner")
	if want := "brokerctl: FailedPrecondition: " + msg + "\n"; r.code != exitMustAct || r.stderr != want || r.stdout != "" {
		t.Errorf("got %+v\nwant code 5, stderr %q", r, want)
	}
	assertNoSecret(t, r, secret)
}

// When the answer to credential set is lost, the secret may or may not be
// stored: brokerctl says so and how to check, whether brokerd reported it
// (its keystore did not answer) or brokerctl's own --timeout ran out.
func TestCredentialSetOutcomeUnknown(t *testing.T) {
	const secret = "Xy8Q~unknown.outcome_value"
	const msg = "the keyring keystore did not answer in time: the new credential of app partner may or may not be stored. brokerd reads the keystore again and uses whatever it holds; check with `brokerctl tenants` in a minute"
	b := &brokertest.FakeBroker{SetErr: status.Error(codes.DeadlineExceeded, msg)}
	r := runCLI(t, secret+"\n", "--socket", brokertest.Serve(t, b), "credential", "set", "--app", "partner")
	if want := "brokerctl: DeadlineExceeded: " + msg + "\n"; r.code != exitUnavailable || r.stderr != want {
		t.Errorf("brokerd's report: got %+v\nwant code 6, stderr %q", r, want)
	}
	assertNoSecret(t, r, secret)

	b = &brokertest.FakeBroker{SetBlock: true}
	r = runCLI(t, secret+"\n", "--socket", brokertest.Serve(t, b), "--timeout", "200ms", "credential", "set", "--app", "partner")
	for _, want := range []string{"brokerctl: DeadlineExceeded: brokerd did not answer within --timeout 200ms",
		"may or may not have been stored", "`brokerctl credential show --app partner`", "brokerctl credential set --app partner"} {
		if r.code != exitUnavailable || !strings.Contains(r.stderr, want) {
			t.Errorf("own timeout: got %+v, want code 6 and %q", r, want)
		}
	}
	assertNoSecret(t, r, secret)
}

func TestCredentialSetTakesNoSecretFlag(t *testing.T) {
	c := newCLI(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	set, _, err := c.root.Find([]string{"credential", "set"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	set.Flags().VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	// Files, names and dates: none takes the secret itself.
	if want := []string{"app", "certificate", "expires", "key", "no-verify", "verify-tenant"}; !slices.Equal(names, want) {
		t.Errorf("credential set flags = %v, want %v", names, want)
	}
}

func assertNoSecret(t *testing.T, r result, secret string) {
	t.Helper()
	if strings.Contains(r.stdout, secret) || strings.Contains(r.stderr, secret) {
		t.Errorf("the secret appears in the output: %+v", r)
	}
}

// canned tenants in every state.
func cannedTenants() []*brokerv1.TenantStatus {
	return []*brokerv1.TenantStatus{
		{
			Name: "contoso", TenantId: "11111111-2222-3333-4444-555555555555", App: "partner",
			State:       brokerv1.TenantState_TENANT_STATE_READY,
			ExpiresAt:   timestamppb.New(testNow.Add(58*time.Minute + 12*time.Second + 300*time.Millisecond)),
			NextRefresh: timestamppb.New(testNow.Add(43*time.Minute + 5*time.Second)),
			Roles:       []string{"Alert.Read.All", "Machine.Isolate"},
			CacheHits:   42, CacheMisses: 1, IdpRequests: 2,
		},
		{
			Name: "fabrikam", TenantId: "22222222-2222-3333-4444-555555555555", App: "partner",
			State:       brokerv1.TenantState_TENANT_STATE_DEGRADED,
			ExpiresAt:   timestamppb.New(testNow.Add(7 * time.Minute)),
			NextRefresh: timestamppb.New(testNow.Add(-time.Second)),
			LastError:   "Entra ID unreachable: dial tcp: i/o timeout;\n\tretrying in 30s",
		},
		{
			Name: "northwind", TenantId: "33333333-2222-3333-4444-555555555555", App: "partner",
			State:       brokerv1.TenantState_TENANT_STATE_FAILED,
			ExpiresAt:   timestamppb.New(testNow.Add(-2 * time.Minute)),
			NextRefresh: timestamppb.New(testNow.Add(2*time.Hour + 30*time.Second)),
			LastError:   "app not consented in tenant northwind (AADSTS700016)",
		},
		{Name: "tailspin", App: "other", State: brokerv1.TenantState_TENANT_STATE_PENDING},
		{Name: "wingtip", TenantId: "55555555-2222-3333-4444-555555555555", App: "other",
			State: brokerv1.TenantState_TENANT_STATE_NO_CREDENTIAL, LastError: "no credential stored for app other"},
	}
}

func TestTenantsTable(t *testing.T) {
	sock := brokertest.Serve(t, &brokertest.FakeBroker{Tenants: cannedTenants()})
	r := runCLI(t, "", "--socket", sock, "tenants")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("tenants = %+v", r)
	}
	want := "" +
		"NAME       TENANT ID                             APP      STATE          EXPIRES IN  NEXT REFRESH  LAST ERROR\n" +
		"contoso    11111111-2222-3333-4444-555555555555  partner  ready          58m12s      43m5s         -\n" +
		"fabrikam   22222222-2222-3333-4444-555555555555  partner  degraded       7m0s        due           Entra ID unreachable: dial tcp: i/o timeout; retrying in 30s\n" +
		"northwind  33333333-2222-3333-4444-555555555555  partner  failed         expired     2h0m30s       app not consented in tenant northwind (AADSTS700016)\n" +
		"tailspin   -                                     other    pending        -           -             -\n" +
		"wingtip    55555555-2222-3333-4444-555555555555  other    no-credential  -           -             no credential stored for app other\n"
	if r.stdout != want {
		t.Errorf("table:\n%s\nwant:\n%s", r.stdout, want)
	}
}

func TestTenantsTableEmpty(t *testing.T) {
	r := runCLI(t, "", "--socket", brokertest.Serve(t, &brokertest.FakeBroker{}), "tenants", "-o", "table")
	want := "NAME  TENANT ID  APP  STATE  EXPIRES IN  NEXT REFRESH  LAST ERROR\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("got %+v, want stdout %q", r, want)
	}
}

func TestTenantsJSON(t *testing.T) {
	canned := cannedTenants()
	sock := brokertest.Serve(t, &brokertest.FakeBroker{Tenants: canned})
	r := runCLI(t, "", "--socket", sock, "tenants", "--output", "json")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("tenants = %+v", r)
	}
	if !strings.HasSuffix(r.stdout, "}\n") || strings.Count(r.stdout, "\n") < 10 {
		t.Errorf("want multi-line JSON ending in a newline, got:\n%s", r.stdout)
	}
	// The same bytes from every build: encoding/json's two-space
	// indentation, whatever white space protojson chose in this build.
	var compact, canonical bytes.Buffer
	if err := json.Compact(&compact, []byte(r.stdout)); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&canonical, compact.Bytes(), "", "  "); err != nil {
		t.Fatal(err)
	}
	if want := canonical.String() + "\n"; r.stdout != want {
		t.Errorf("output is not the canonical indentation:\n%q\nwant\n%q", r.stdout, want)
	}

	var got brokerv1.ListTenantsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("output is not a ListTenantsResponse: %v\n%s", err, r.stdout)
	}
	if !proto.Equal(&got, &brokerv1.ListTenantsResponse{Tenants: canned}) {
		t.Errorf("round trip differs:\n%s", r.stdout)
	}

	// The field names scripts rely on: the proto's snake_case names.
	var doc struct {
		Tenants []map[string]any `json:"tenants"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	first := doc.Tenants[0]
	for _, key := range []string{"name", "tenant_id", "app", "state", "expires_at", "next_refresh", "roles", "cache_hits", "cache_misses", "idp_requests"} {
		if _, ok := first[key]; !ok {
			t.Errorf("first tenant has no %q field: %v", key, first)
		}
	}
	if first["state"] != "TENANT_STATE_READY" {
		t.Errorf("state = %v, want TENANT_STATE_READY", first["state"])
	}
	if first["expires_at"] != "2026-03-01T12:58:12.300Z" {
		t.Errorf("expires_at = %v", first["expires_at"])
	}
	if _, ok := first["tenantId"]; ok {
		t.Errorf("camelCase field names in the output")
	}
}

func TestTenantsRPCError(t *testing.T) {
	const msg = "caller uid 1001 may not list tenants"
	sock := brokertest.Serve(t, &brokertest.FakeBroker{ListErr: status.Error(codes.PermissionDenied, msg)})
	for _, output := range []string{"table", "json"} {
		r := runCLI(t, "", "--socket", sock, "tenants", "--output", output)
		if want := "brokerctl: PermissionDenied: " + msg + "\n"; r.code != exitDenied || r.stderr != want || r.stdout != "" {
			t.Errorf("--output %s: got %+v, want code 4 and stderr %q", output, r, want)
		}
	}
}

func TestEveryCommandHasExamples(t *testing.T) {
	c := newCLI(strings.NewReader(""), &bytes.Buffer{}, &bytes.Buffer{})
	var walk func(cmd *cobra.Command)
	walk = func(cmd *cobra.Command) {
		if cmd.Name() == "completion" || cmd.Name() == "help" {
			return // cobra's own
		}
		if strings.TrimSpace(cmd.Example) == "" {
			t.Errorf("%q has no examples", cmd.CommandPath())
		}
		for _, sub := range cmd.Commands() {
			walk(sub)
		}
	}
	walk(c.root)
}

func TestRootHelpDocumentsExitStatus(t *testing.T) {
	r := runCLI(t, "", "--help")
	if r.code != 0 {
		t.Fatalf("--help = %+v", r)
	}
	for _, line := range []string{
		"  0  success",
		"  1  internal, unknown or other error",
		"  2  usage error (bad flags or input), or INVALID_ARGUMENT",
		"  3  NOT_FOUND",
		"  4  PERMISSION_DENIED or UNAUTHENTICATED",
		"  5  FAILED_PRECONDITION: a person must act",
		"  6  UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED, or brokerd is not",
		"$BROKERD_SOCKET",
	} {
		if !strings.Contains(r.stdout, line) {
			t.Errorf("root help lacks %q", line)
		}
	}
	// The table in the help and exitStatus agree.
	for code, want := range map[codes.Code]int{
		codes.OK: 0, codes.Internal: 1, codes.InvalidArgument: 2, codes.NotFound: 3,
		codes.PermissionDenied: 4, codes.FailedPrecondition: 5, codes.Unavailable: 6,
	} {
		if !strings.Contains(exitStatusHelp(), "  "+string(rune('0'+want))+"  ") || exitStatus(code) != want {
			t.Errorf("exit status of %v = %d, want %d", code, exitStatus(code), want)
		}
	}
}

func TestCompletionCommand(t *testing.T) {
	r := runCLI(t, "", "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "brokerctl") {
		t.Errorf("completion bash: code %d, %d bytes of output", r.code, len(r.stdout))
	}
}

func TestTenantFlagCompletion(t *testing.T) {
	sock := brokertest.Serve(t, &brokertest.FakeBroker{Tenants: cannedTenants()})
	r := runCLI(t, "", "__complete", "--socket", sock, "get", "--tenant", "")
	if r.code != 0 || !strings.Contains(r.stdout, "contoso\t11111111-2222-3333-4444-555555555555\n") ||
		!strings.Contains(r.stdout, "wingtip\t") {
		t.Errorf("completion of --tenant: %+v", r)
	}
	r = runCLI(t, "", "__complete", "--socket", sock, "credential", "set", "--app", "")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "partner\nother\n") {
		t.Errorf("completion of --app: %+v", r)
	}
}

// The README's exit status table says what exitTable does.
func TestREADMEExitTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]codes.Code{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		byName[strings.ToUpper(regexp.MustCompile(`([a-z])([A-Z])`).ReplaceAllString(c.String(), "${1}_$2"))] = c
	}
	row := regexp.MustCompile(`(?m)^\| ([0-9]) \| ([A-Z_, a-z]+) \|`)
	seen := map[int]bool{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		status := int(m[1][0] - '0')
		seen[status] = true
		for _, name := range strings.Split(m[2], ", ") {
			if name == "others" {
				continue
			}
			c, ok := byName[name]
			if !ok {
				t.Errorf("README exit %d: unknown code %q", status, name)
				continue
			}
			if got := exitStatus(c); got != status {
				t.Errorf("README says %s exits %d; brokerctl exits %d", name, status, got)
			}
		}
	}
	for _, r := range exitTable {
		if !seen[r.status] {
			t.Errorf("exit status %d is not in the README's table", r.status)
		}
	}
}
