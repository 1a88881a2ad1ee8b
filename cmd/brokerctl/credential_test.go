package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

func TestCredentialSetFlags(t *testing.T) {
	const secret = "Xy8Q~flags.secret_value"
	tests := []struct {
		name string
		args []string
		want string // stderr without " (see brokerctl credential set --help)\n"
	}{
		{"--expires with --certificate", []string{"--certificate", "cert.pem", "--expires", "2027-03-01"},
			"brokerctl: --expires is for client secrets: a certificate's expiry is its own notAfter"},
		{"--expires in the past", []string{"--expires", "2026-02-28"},
			`brokerctl: --expires 2026-02-28 is in the past: give the date the secret expires, as the app registration's "Certificates & secrets" page shows it`},
		{"--expires now", []string{"--expires", "2026-03-01T12:00:00Z"},
			`brokerctl: --expires 2026-03-01T12:00:00Z is in the past: give the date the secret expires, as the app registration's "Certificates & secrets" page shows it`},
		{"--expires in a bad format", []string{"--expires", "01/03/2027"},
			`brokerctl: invalid --expires "01/03/2027": give a date, 2027-03-01, or an RFC 3339 time, 2027-03-01T12:00:00Z`},
		{"--no-verify with --verify-tenant", []string{"--no-verify", "--verify-tenant", "contoso"},
			"brokerctl: --no-verify and --verify-tenant exclude each other: give one"},
		{"empty --verify-tenant", []string{"--verify-tenant", " "},
			"brokerctl: --verify-tenant must not be empty: give the tenant's configured name, tenant id or domain"},
		{"--key without --certificate", []string{"--key", "key.pem"},
			"brokerctl: --key goes with --certificate: give the certificate file too"},
		{"empty --certificate", []string{"--certificate", ""},
			"brokerctl: --certificate must not be empty: give the certificate's file, or - for stdin"},
		{"both from stdin", []string{"--certificate", "-", "--key", "-"},
			"brokerctl: --certificate and --key cannot both read stdin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &brokertest.FakeBroker{}
			r := runCLI(t, secret+"\n", append([]string{"--socket", brokertest.Serve(t, b), "credential", "set", "--app", "partner"}, tt.args...)...)
			if want := tt.want + " (see brokerctl credential set --help)\n"; r.code != exitUsage || r.stderr != want || r.stdout != "" {
				t.Errorf("got %+v\nwant exit 2 and stderr %q", r, want)
			}
			if n := b.Calls(); n != 0 {
				t.Errorf("brokerd received %d calls, want 0", n)
			}
		})
	}
}

func TestCredentialSetSecretOptions(t *testing.T) {
	const secret = "Xy8Q~options.secret_value"
	tests := []struct {
		name      string
		args      []string
		resp      *brokerv1.SetCredentialResponse
		want      *brokerv1.SetCredentialRequest
		stdout    string
		stderrHas string
	}{
		{"--expires as a date", []string{"--expires", "2027-03-01"},
			&brokerv1.SetCredentialResponse{VerifiedWithTenant: "contoso"},
			&brokerv1.SetCredentialRequest{ExpiresAt: timestamppb.New(time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC))},
			"credential for app partner stored (verified with tenant contoso)\n  expires:     2027-03-01 00:00:00 UTC (364 days left)\n", ""},
		{"--expires in RFC 3339", []string{"--expires", "2026-03-20T09:30:00+01:00"},
			&brokerv1.SetCredentialResponse{VerifiedWithTenant: "contoso"},
			&brokerv1.SetCredentialRequest{ExpiresAt: timestamppb.New(time.Date(2026, 3, 20, 8, 30, 0, 0, time.UTC))},
			"credential for app partner stored (verified with tenant contoso)\n  expires:     2026-03-20 08:30:00 UTC (18 days left)\n", ""},
		{"--verify-tenant", []string{"--verify-tenant", "fabrikam"},
			&brokerv1.SetCredentialResponse{VerifiedWithTenant: "fabrikam"},
			&brokerv1.SetCredentialRequest{VerifyTenant: "fabrikam"},
			"credential for app partner stored (verified with tenant fabrikam)\n", ""},
		{"--no-verify", []string{"--no-verify"},
			&brokerv1.SetCredentialResponse{},
			&brokerv1.SetCredentialRequest{NoVerify: true},
			"credential for app partner stored (not verified: --no-verify)\n",
			"WARNING: the credential was stored WITHOUT checking it with Entra ID; if it is wrong or not registered on app partner, its tenants fail at the next token request."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &brokertest.FakeBroker{SetResp: tt.resp}
			r := runCLI(t, secret+"\n", append([]string{"--socket", brokertest.Serve(t, b), "credential", "set", "--app", "partner"}, tt.args...)...)
			if r.code != 0 || r.stdout != tt.stdout {
				t.Errorf("got %+v\nwant stdout %q", r, tt.stdout)
			}
			if (tt.stderrHas == "") != (r.stderr == "") || !strings.Contains(r.stderr, tt.stderrHas) {
				t.Errorf("stderr = %q, want %q", r.stderr, tt.stderrHas)
			}
			reqs := b.SetRequests()
			if len(reqs) != 1 {
				t.Fatalf("brokerd received %d requests, want 1", len(reqs))
			}
			got := reqs[0]
			if got.GetClientSecret() != secret || got.GetVerifyTenant() != tt.want.GetVerifyTenant() || got.GetNoVerify() != tt.want.GetNoVerify() ||
				!got.GetExpiresAt().AsTime().Equal(tt.want.GetExpiresAt().AsTime()) || (got.ExpiresAt == nil) != (tt.want.ExpiresAt == nil) {
				t.Errorf("request: verify_tenant %q, no_verify %v, expires_at %v; want %q, %v, %v",
					got.GetVerifyTenant(), got.GetNoVerify(), got.GetExpiresAt(), tt.want.GetVerifyTenant(), tt.want.GetNoVerify(), tt.want.GetExpiresAt())
			}
			assertNoSecret(t, r, secret)
		})
	}
}

func TestCredentialSetCertificateNoVerify(t *testing.T) {
	k := testKeys()
	cert := validCert(t, k.a)
	b := &brokertest.FakeBroker{}
	f := writeFile(t, "partner.pem", append(certPEM(cert), pkcs1PEM(k.a)...))
	r := runCLI(t, "", "--socket", brokertest.Serve(t, b), "credential", "set", "--app", "partner", "--certificate", f, "--no-verify")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "credential for app partner stored (not verified: --no-verify)\n  kind:        certificate\n") ||
		!strings.HasPrefix(r.stderr, "WARNING: the credential was stored WITHOUT checking it with Entra ID;") {
		t.Errorf("got %+v", r)
	}
	if reqs := b.SetRequests(); len(reqs) != 1 || !reqs[0].GetNoVerify() || reqs[0].GetCertificatePem() == nil || reqs[0].ExpiresAt != nil {
		t.Errorf("brokerd received %v", reqs)
	}
}

// certInfo is a certificate credential as brokerd describes it.
func certInfo() *brokerv1.CredentialInfo {
	return &brokerv1.CredentialInfo{
		App: "partner", Kind: brokerv1.CredentialKind_CREDENTIAL_KIND_CERTIFICATE, Keystore: "keyring",
		SetAt:            timestamppb.New(time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)),
		ExpiresAt:        timestamppb.New(testNow.Add(12*24*time.Hour + time.Hour)),
		ThumbprintSha1:   "3F2A1B9C0D8E7F6A5B4C3D2E1F0A9B8C7D6E5F4A",
		ThumbprintSha256: "AB" + strings.Repeat("0", 62),
		Subject:          "CN=partner-app",
		SendX5C:          true,
	}
}

func TestCredentialShow(t *testing.T) {
	tests := []struct {
		name string
		info *brokerv1.CredentialInfo
		text string
		json string
	}{
		{"certificate", certInfo(),
			"app:                partner\n" +
				"kind:               certificate\n" +
				"keystore:           keyring\n" +
				"set at:             2026-02-01 10:00:00 UTC\n" +
				"expires:            2026-03-13 13:00:00 UTC (12 days left)\n" +
				"thumbprint sha-1:   3F2A1B9C0D8E7F6A5B4C3D2E1F0A9B8C7D6E5F4A\n" +
				"thumbprint sha-256: AB" + strings.Repeat("0", 62) + "\n" +
				"subject:            CN=partner-app\n" +
				"send x5c:           yes\n",
			`{"app":"partner","kind":"certificate","keystore":"keyring","set_at":"2026-02-01T10:00:00Z","expires_at":"2026-03-13T13:00:00Z","days_left":12,` +
				`"thumbprint_sha1":"3F2A1B9C0D8E7F6A5B4C3D2E1F0A9B8C7D6E5F4A","thumbprint_sha256":"AB` + strings.Repeat("0", 62) + `","subject":"CN=partner-app","assertion_file":"","send_x5c":true}` + "\n"},
		{"secret of unknown expiry, set by other means",
			&brokerv1.CredentialInfo{App: "partner", Kind: brokerv1.CredentialKind_CREDENTIAL_KIND_SECRET, Keystore: "systemd"},
			"app:                partner\n" +
				"kind:               secret\n" +
				"keystore:           systemd\n" +
				"set at:             unknown (not stored by brokerctl credential set)\n" +
				"expires:            unknown (give it with `brokerctl credential set --app partner --expires DATE`)\n",
			`{"app":"partner","kind":"secret","keystore":"systemd","set_at":null,"expires_at":null,"days_left":null,` +
				`"thumbprint_sha1":"","thumbprint_sha256":"","subject":"","assertion_file":"","send_x5c":false}` + "\n"},
		{"expired secret",
			&brokerv1.CredentialInfo{App: "partner", Kind: brokerv1.CredentialKind_CREDENTIAL_KIND_SECRET, Keystore: "keyring",
				SetAt: timestamppb.New(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)), ExpiresAt: timestamppb.New(testNow.Add(-3*24*time.Hour - time.Hour))},
			"app:                partner\n" +
				"kind:               secret\n" +
				"keystore:           keyring\n" +
				"set at:             2024-03-01 00:00:00 UTC\n" +
				"expires:            2026-02-26 11:00:00 UTC (EXPIRED 3 days ago)\n",
			`{"app":"partner","kind":"secret","keystore":"keyring","set_at":"2024-03-01T00:00:00Z","expires_at":"2026-02-26T11:00:00Z","days_left":-4,` +
				`"thumbprint_sha1":"","thumbprint_sha256":"","subject":"","assertion_file":"","send_x5c":false}` + "\n"},
		{"assertion file",
			&brokerv1.CredentialInfo{App: "ci", Kind: brokerv1.CredentialKind_CREDENTIAL_KIND_ASSERTION_FILE, AssertionFile: "/var/run/secrets/tokens/azure-identity-token"},
			"app:                ci\n" +
				"kind:               assertion_file\n" +
				"assertion file:     /var/run/secrets/tokens/azure-identity-token\n",
			`{"app":"ci","kind":"assertion_file","keystore":"","set_at":null,"expires_at":null,"days_left":null,` +
				`"thumbprint_sha1":"","thumbprint_sha256":"","subject":"","assertion_file":"/var/run/secrets/tokens/azure-identity-token","send_x5c":false}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newCredBroker(tt.info)
			sock := brokertest.Serve(t, b)
			r := runCLI(t, "", "--socket", sock, "credential", "show", "--app", tt.info.GetApp())
			if r.code != 0 || r.stdout != tt.text || r.stderr != "" {
				t.Errorf("text: got %+v\nwant stdout:\n%s", r, tt.text)
			}
			r = runCLI(t, "", "--socket", sock, "credential", "show", "--app", tt.info.GetApp(), "-o", "json")
			if r.code != 0 || r.stdout != tt.json || r.stderr != "" {
				t.Errorf("json: got %+v\nwant stdout:\n%s", r, tt.json)
			}
			var keys map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 11 {
				t.Errorf("json: %d keys (%v), want all 11", len(keys), err)
			}
			if gets, _ := b.requests(); !slices.Equal(gets, []string{tt.info.GetApp(), tt.info.GetApp()}) {
				t.Errorf("GetCredential calls for %v", gets)
			}
		})
	}
}

func TestCredentialShowErrors(t *testing.T) {
	b := newCredBroker(nil)
	const msg = "app partner has no credential stored: store one with `brokerctl credential set --app partner`"
	b.Err = status.Error(codes.FailedPrecondition, msg)
	r := runCLI(t, "", "--socket", brokertest.Serve(t, b), "credential", "show", "--app", "partner")
	if want := "brokerctl: FailedPrecondition: " + msg + "\n"; r.code != exitMustAct || r.stderr != want || r.stdout != "" {
		t.Errorf("got %+v, want exit 5 and %q", r, want)
	}
	r = runCLI(t, "", "--socket", brokertest.Serve(t, b), "credential", "show", "--app", "partner", "--output", "yaml")
	if r.code != exitUsage || r.stderr != `brokerctl: invalid --output "yaml": want text or json (see brokerctl credential show --help)`+"\n" {
		t.Errorf("bad --output: %+v", r)
	}
}

func TestCredentialDelete(t *testing.T) {
	b := newCredBroker(certInfo())
	r := runCLI(t, "", "--socket", brokertest.Serve(t, b), "credential", "delete", "--app", "partner", "--yes")
	want := "deleted the certificate CN=partner-app (thumbprint 3F2A1B9C0D8E7F6A5B4C3D2E1F0A9B8C7D6E5F4A, in the keyring keystore, expires 2026-03-13 13:00:00 UTC (12 days left)) of app partner\n" +
		"tokens already issued stay valid until they expire; app partner's tenants get no new token until `brokerctl credential set --app partner`\n"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Errorf("got %+v\nwant stdout:\n%s", r, want)
	}
	if gets, dels := b.requests(); len(gets) != 0 || !slices.Equal(dels, []string{"partner"}) {
		t.Errorf("brokerd received GetCredential %v, DeleteCredential %v; want only DeleteCredential for partner", gets, dels)
	}

	b = newCredBroker(&brokerv1.CredentialInfo{App: "partner", Kind: brokerv1.CredentialKind_CREDENTIAL_KIND_SECRET, Keystore: "keyring"})
	r = runCLI(t, "", "--socket", brokertest.Serve(t, b), "credential", "delete", "--app", "partner", "-y")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "deleted the client secret (in the keyring keystore) of app partner\n") {
		t.Errorf("secret: %+v", r)
	}

	const msg = "app nosuch is not configured"
	b = newCredBroker(nil)
	b.Err = status.Error(codes.NotFound, msg)
	r = runCLI(t, "", "--socket", brokertest.Serve(t, b), "credential", "delete", "--app", "nosuch", "--yes")
	if want := "brokerctl: NotFound: " + msg + "\n"; r.code != exitNotFound || r.stderr != want || r.stdout != "" {
		t.Errorf("unknown app: %+v, want exit 3 and %q", r, want)
	}
}

// Without a terminal to ask on, delete needs --yes, and sends nothing.
func TestCredentialDeleteNeedsYesWithoutTerminal(t *testing.T) {
	b := newCredBroker(certInfo())
	r := runCLI(t, "y\n", "--socket", brokertest.Serve(t, b), "credential", "delete", "--app", "partner")
	if want := "brokerctl: stdin is not a terminal to ask on: add --yes to delete the credential of app partner without asking (see brokerctl credential delete --help)\n"; r.code != exitUsage || r.stderr != want || r.stdout != "" {
		t.Errorf("got %+v\nwant exit 2 and %q", r, want)
	}
	if gets, dels := b.requests(); len(gets)+len(dels)+b.Calls() != 0 {
		t.Errorf("brokerd received calls: GetCredential %v, DeleteCredential %v", gets, dels)
	}
}

func TestTenantsShowsAppCredentials(t *testing.T) {
	soon := certInfo() // 12 days left
	expired := &brokerv1.CredentialInfo{App: "legacy", Kind: brokerv1.CredentialKind_CREDENTIAL_KIND_SECRET, Keystore: "keyring",
		ExpiresAt: timestamppb.New(testNow.Add(-49 * time.Hour))}
	fine := &brokerv1.CredentialInfo{App: "other", Kind: brokerv1.CredentialKind_CREDENTIAL_KIND_SECRET, Keystore: "keyring",
		ExpiresAt: timestamppb.New(testNow.Add(200 * 24 * time.Hour))}
	unknown := &brokerv1.CredentialInfo{App: "quiet", Kind: brokerv1.CredentialKind_CREDENTIAL_KIND_SECRET, Keystore: "systemd"}
	apps := []*brokerv1.AppStatus{
		{Name: "legacy", Credential: expired},
		{Name: "none", CredentialError: "cannot read the credential of app none: keystore: keyring get: Secret Service unavailable; unlock the login keyring"},
		{Name: "other", Credential: fine},
		{Name: "partner", Credential: soon},
		{Name: "quiet", Credential: unknown},
	}
	sock := brokertest.Serve(t, &brokertest.FakeBroker{Tenants: cannedTenants(), Apps: apps})
	r := runCLI(t, "", "--socket", sock, "tenants")
	tenantsTable, appsPart, ok := strings.Cut(r.stdout, "\n\n")
	if r.code != 0 || r.stderr != "" || !ok || strings.Count(tenantsTable, "\n") != 5 {
		t.Fatalf("tenants = %+v", r)
	}
	want := "" +
		"APP      CREDENTIAL   THUMBPRINT   EXPIRES\n" +
		"legacy   secret       -            2026-02-27 (EXPIRED)\n" +
		"none     -            -            -\n" +
		"other    secret       -            2026-09-17 (200 days left)\n" +
		"partner  certificate  3F2A1B9C...  2026-03-13 (12 days left)\n" +
		"quiet    secret       -            unknown\n" +
		"\n" +
		"WARNING: the secret of app legacy EXPIRED on 2026-02-27: its tenants fail once their cached tokens run out; rotate it with `brokerctl credential set --app legacy`\n" +
		"WARNING: app none: cannot read the credential of app none: keystore: keyring get: Secret Service unavailable; unlock the login keyring\n" +
		"WARNING: the certificate of app partner expires on 2026-03-13 (12 days left): rotate it with `brokerctl credential set --app partner`\n"
	if appsPart != want {
		t.Errorf("apps part:\n%s\nwant:\n%s", appsPart, want)
	}

	// The JSON carries the apps with their credentials.
	r = runCLI(t, "", "--socket", sock, "tenants", "-o", "json")
	var got brokerv1.ListTenantsResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 || r.stderr != "" {
		t.Fatalf("tenants --output json: %+v (%v)", r, err)
	}
	if !proto.Equal(&got, &brokerv1.ListTenantsResponse{Tenants: cannedTenants(), Apps: apps}) || strings.Contains(r.stdout, "WARNING") {
		t.Errorf("tenants --output json does not carry the apps and their credentials, or warns:\n%s", r.stdout)
	}
}

func TestCredentialAppCompletion(t *testing.T) {
	sock := brokertest.Serve(t, &brokertest.FakeBroker{Tenants: cannedTenants()})
	for _, sub := range []string{"set", "show", "delete"} {
		r := runCLI(t, "", "__complete", "--socket", sock, "credential", sub, "--app", "")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "partner\nother\n") {
			t.Errorf("completion of credential %s --app: %+v", sub, r)
		}
	}
}
