package broker

import (
	"strings"
	"testing"
	"time"
)

const goodConfig = `
authority_host = "https://login.microsoftonline.com"   # optional; this is the default
keystore = "keyring"                                   # keyring | memory
[apps.partner]
client_id = "00000000-0000-0000-0000-000000000000"
scopes = ["https://api.securitycenter.microsoft.com/.default"]   # optional; this is the default
[tenants.contoso]
id = "11111111-1111-1111-1111-111111111111"
app = "partner"
`

func TestParseConfigIssueShape(t *testing.T) {
	c, err := ParseConfig("brokerd.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.AuthorityHost != DefaultAuthorityHost || c.Keystore != "keyring" {
		t.Errorf("authority_host, keystore = %q, %q", c.AuthorityHost, c.Keystore)
	}
	if got := c.Tenants["contoso"]; got.ID != "11111111-1111-1111-1111-111111111111" || got.App != "partner" {
		t.Errorf("tenant = %+v", got)
	}
	if time.Duration(c.MinValid) != DefaultMinValid || time.Duration(c.RefreshBefore) != DefaultRefreshBefore ||
		time.Duration(c.IdPTimeout) != DefaultIdPTimeout || c.PrefetchConcurrency != DefaultPrefetch {
		t.Errorf("defaults not filled: %+v", c)
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig("c.toml", []byte(`
[apps.a]
client_id = "AAAAAAAA-0000-0000-0000-000000000000"
[tenants.t1]
id = "BBBBBBBB-0000-0000-0000-000000000000"
domains = ["Contoso.OnMicrosoft.com"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Apps["a"].ClientID != "aaaaaaaa-0000-0000-0000-000000000000" {
		t.Errorf("client_id not lower-cased: %q", c.Apps["a"].ClientID)
	}
	if got := c.Apps["a"].Scopes; len(got) != 1 || got[0] != DefaultScope {
		t.Errorf("scopes = %v", got)
	}
	tn := c.Tenants["t1"]
	if tn.App != "a" || tn.ID != "bbbbbbbb-0000-0000-0000-000000000000" || tn.Domains[0] != "contoso.onmicrosoft.com" {
		t.Errorf("tenant = %+v", tn)
	}
	if c.Keystore != "keyring" || c.AuthorityHost != DefaultAuthorityHost {
		t.Errorf("defaults: %+v", c)
	}
}

func TestParseConfigErrors(t *testing.T) {
	const app = "[apps.partner]\nclient_id = \"00000000-0000-0000-0000-000000000000\"\n"
	const tenant = "[tenants.contoso]\nid = \"11111111-1111-1111-1111-111111111111\"\napp = \"partner\"\n"
	tests := []struct {
		name, doc string
		want      []string // substrings of the error
	}{
		{"unknown top-level key", "keystroke = \"x\"\n" + app + tenant, []string{"c.toml:1:", `unknown key "keystroke"`}},
		{"unknown tenant key", app + tenant + "tenant_id = \"x\"\n", []string{"c.toml:6:", `unknown key "tenants.contoso.tenant_id"`}},
		{"syntax error", app + "[tenants.contoso\n", []string{"c.toml:3:"}},
		{"wrong type", "prefetch_concurrency = \"8\"\n" + app + tenant, []string{"c.toml:1:", "prefetch_concurrency"}},
		{"bad duration", "min_valid = \"5 minutes\"\n" + app + tenant, []string{"c.toml:1:", "min_valid", "not a duration"}},
		{"negative duration", "refresh_before = \"-1m\"\n" + app + tenant, []string{"c.toml:1:", "refresh_before", "out of range"}},
		{"bad keystore", "keystore = \"vault\"\n" + app + tenant, []string{"c.toml:1:", "keystore", "keyring, systemd or memory"}},
		{"http authority", "authority_host = \"http://login.microsoftonline.com\"\n" + app + tenant, []string{"c.toml:1:", "authority_host", "https"}},
		{"authority with path", "authority_host = \"https://login.microsoftonline.com/common\"\n" + app + tenant, []string{"authority_host", "no path"}},
		{"bad client id", "[apps.partner]\nclient_id = \"partner-app\"\n" + tenant, []string{"c.toml:2:", "apps.partner.client_id", "not a GUID"}},
		{"missing client id", "[apps.partner]\nscopes = []\n" + tenant, []string{"c.toml:1:", "client_id is required"}},
		{"bad scope", app + "scopes = [\"https://api.securitycenter.microsoft.com/Alert.Read.All\"]\n" + tenant, []string{"c.toml:3:", "apps.partner.scopes", "/.default"}},
		{"no apps", tenant, []string{"apps", "no app is configured"}},
		{"no tenants", app, []string{"tenants", "no tenant is configured"}},
		{"bad tenant id", app + "[tenants.contoso]\nid = \"contoso.onmicrosoft.com\"\napp = \"partner\"\n", []string{"c.toml:4:", "tenants.contoso.id", "not a GUID"}},
		{"missing tenant id", app + "[tenants.contoso]\napp = \"partner\"\n", []string{"c.toml:3:", "tenants.contoso", "id is required"}},
		{"unknown app", app + "[tenants.contoso]\nid = \"11111111-1111-1111-1111-111111111111\"\napp = \"other\"\n", []string{"c.toml:5:", "tenants.contoso.app", `"other" is not a configured app`, "partner"}},
		{"duplicate tenant id", app + tenant + "[tenants.fabrikam]\nid = \"11111111-1111-1111-1111-111111111111\"\n", []string{"c.toml:7:", "tenants.fabrikam.id", `already used by tenant "contoso"`}},
		{"tenant named like a GUID", app + "[tenants.22222222-2222-2222-2222-222222222222]\nid = \"11111111-1111-1111-1111-111111111111\"\n", []string{"must not be a GUID"}},
		{"bad domain", app + tenant + "domains = [\"not a domain\"]\n", []string{"c.toml:6:", "tenants.contoso.domains"}},
		{"inline table location", app + "[tenants]\ncontoso = { id = \"nope\", app = \"partner\" }\n", []string{"c.toml:4:", "tenants.contoso.id"}},
		{"prefetch out of range", "prefetch_concurrency = 100000\n" + app + tenant, []string{"c.toml:1:", "prefetch_concurrency", "out of range"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig("c.toml", []byte(tt.doc))
			if err == nil {
				t.Fatalf("no error for:\n%s", tt.doc)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateScope(t *testing.T) {
	for _, s := range []string{DefaultScope, "https://graph.microsoft.com/.default", "api://my-api/.default", "00000003-0000-0000-c000-000000000000/.default"} {
		if err := ValidateScope(s); err != nil {
			t.Errorf("ValidateScope(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "/.default", "https://graph.microsoft.com/User.Read", "openid", "http://x/.default", "https://a b/.default", strings.Repeat("a", 600) + "/.default"} {
		if err := ValidateScope(s); err == nil {
			t.Errorf("ValidateScope(%q) accepted", s)
		}
	}
}

func TestParseConfigAccessLists(t *testing.T) {
	const doc = `allow_users = ["nobody"]
[apps.partner]
client_id = "00000000-0000-0000-0000-000000000000"
[tenants.contoso]
id = "11111111-1111-1111-1111-111111111111"
allow_uids = [4242]
allow_groups = ["root"]
[tenants.fabrikam]
id = "22222222-2222-2222-2222-222222222222"
`
	c, err := ParseConfig("c.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Tenants["contoso"].access; len(a.UIDs) != 1 || a.UIDs[0] != 4242 || len(a.GIDs) != 1 || a.GIDs[0] != 0 || a.Source != "tenants.contoso allow lists" {
		t.Errorf("contoso access = %+v", a)
	}
	if a := c.Tenants["fabrikam"].access; a != c.access || len(a.UIDs) != 1 || a.UIDs[0] != 65534 {
		t.Errorf("fabrikam does not inherit the top-level list: %+v", a)
	}

	for _, tt := range []struct{ doc, want string }{
		{"allow_users = [\"no-such-user-xyz\"]\n" + doc[len("allow_users = [\"nobody\"]\n"):], `c.toml:1: allow_users: no user "no-such-user-xyz"`},
		{doc + "allow_groups = [\"no-such-group-xyz\"]\n", `c.toml:10: tenants.fabrikam.allow_groups: no group "no-such-group-xyz"`},
		{doc + "allow_uids = [-1]\n", `tenants.fabrikam.allow_uids: -1 is not a uid`},
	} {
		if _, err := ParseConfig("c.toml", []byte(tt.doc)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want %q", err, tt.want)
		}
	}
}
