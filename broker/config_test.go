package broker

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/keystore"
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
	if c.AuthorityHost() != DefaultAuthorityHost || c.Keystore() != "keyring" {
		t.Errorf("authority_host, keystore = %q, %q", c.AuthorityHost(), c.Keystore())
	}
	if got := tenantNamed(t, c, "contoso"); got.ID != "11111111-1111-1111-1111-111111111111" || got.App != "partner" {
		t.Errorf("tenant = %+v", got)
	}
	if c.MinValid() != DefaultMinValid || c.RefreshBefore() != DefaultRefreshBefore || c.IdPTimeout() != DefaultIdPTimeout ||
		c.PrefetchConcurrency() != DefaultPrefetch || c.PrefetchRate() != DefaultPrefetchRate || c.MaxIdPRequests() != DefaultMaxInFlight {
		t.Errorf("defaults not filled: %+v", c)
	}
}

// tenantNamed is the tenant of c called name.
func tenantNamed(t *testing.T, c *Config, name string) TenantConfig {
	t.Helper()
	for _, tn := range c.Tenants() {
		if tn.Name == name {
			return tn
		}
	}
	t.Fatalf("no tenant %q in %+v", name, c.Tenants())
	return TenantConfig{}
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
	apps := c.Apps()
	if len(apps) != 1 || apps[0].Name != "a" || apps[0].ClientID != "aaaaaaaa-0000-0000-0000-000000000000" {
		t.Errorf("apps (client_id lower-cased) = %+v", apps)
	}
	if got := apps[0].Scopes; len(got) != 1 || got[0] != DefaultScope {
		t.Errorf("scopes = %v", got)
	}
	tn := tenantNamed(t, c, "t1")
	if tn.App != "a" || tn.ID != "bbbbbbbb-0000-0000-0000-000000000000" || tn.Domains[0] != "contoso.onmicrosoft.com" {
		t.Errorf("tenant = %+v", tn)
	}
	if c.Keystore() != "keyring" || c.AuthorityHost() != DefaultAuthorityHost {
		t.Errorf("defaults: %+v", c)
	}
	if a := c.Access(); a == nil || len(a.UIDs)+len(a.GIDs) != 0 || tn.Access.Source != a.Source {
		t.Errorf("access = %+v, tenant's = %+v", a, tn.Access)
	}
}

// The accessors hand out copies: changing them changes no Config.
func TestConfigAccessorsCopy(t *testing.T) {
	c, err := ParseConfig("c.toml", []byte(goodConfig+"domains = [\"contoso.onmicrosoft.com\"]\nallow_uids = [4242]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c.Apps()[0].Scopes[0] = "x"
	tn := c.Tenants()
	tn[0].Domains[0], tn[0].Access.UIDs[0] = "x", 1
	c.Access().Source = "x"
	if c.Apps()[0].Scopes[0] != DefaultScope || c.Tenants()[0].Domains[0] != "contoso.onmicrosoft.com" ||
		c.Tenants()[0].Access.UIDs[0] != 4242 || c.Access().Source == "x" {
		t.Errorf("an accessor shares its slices: %+v %+v", c.Apps(), c.Tenants())
	}
}

// Apps and tenants come sorted by name, whatever the document's order.
func TestConfigSorted(t *testing.T) {
	c, err := ParseConfig("c.toml", []byte(`
[apps.z]
client_id = "00000000-0000-0000-0000-000000000001"
[apps.a]
client_id = "00000000-0000-0000-0000-000000000002"
[tenants.zeta]
id = "11111111-1111-1111-1111-111111111111"
app = "z"
[tenants.alpha]
id = "22222222-2222-2222-2222-222222222222"
app = "a"
`))
	if err != nil {
		t.Fatal(err)
	}
	if a, tn := c.Apps(), c.Tenants(); a[0].Name != "a" || a[1].Name != "z" || tn[0].Name != "alpha" || tn[1].Name != "zeta" {
		t.Errorf("apps %+v, tenants %+v", a, tn)
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
		{"unknown key in an inline tenant", app + "[tenants]\nx = { id = \"11111111-1111-1111-1111-111111111111\", foo = 1 }\n", []string{`c.toml:4: unknown key "tenants.x.foo"`}},
		{"unknown key under a dotted key", "tenants.x.foo = 1\n" + app, []string{`c.toml:1: unknown key "tenants.x.foo"`}},
		{"unknown key in a table header", app + "[tenants.x.foo]\n", []string{`c.toml:3: unknown key "tenants.x.foo"`}},
		{"wrong type", "prefetch_concurrency = \"8\"\n" + app + tenant, []string{"c.toml:1: prefetch_concurrency: expected an integer, got a string"}},
		{"boolean for an integer", "prefetch_rate = true\n" + app + tenant, []string{"c.toml:1: prefetch_rate: expected an integer, got the boolean true"}},
		{"bare number duration", "keystore = \"memory\"\n\nmin_valid = 300\n" + app + tenant, []string{`c.toml:3: min_valid: expected a duration string such as "5m", got the integer 300`}},
		{"float duration", "idp_timeout = 1.5\n" + app + tenant, []string{`c.toml:1: idp_timeout: expected a duration string such as "5m", got the float 1.5`}},
		{"table duration", "[refresh_before]\n" + app + tenant, []string{`c.toml:1: refresh_before: expected a duration string such as "5m", got a table`}},
		{"string for an array", app + tenant + "domains = \"contoso.onmicrosoft.com\"\n", []string{"c.toml:6: tenants.contoso.domains: expected an array of strings, got a string"}},
		{"integer in an array of strings", "allow_users = [\"root\", 0]\n" + app + tenant, []string{"c.toml:1: allow_users: expected an array of strings, got an array containing the integer 0"}},
		{"string in an array of integers", app + tenant + "allow_uids = [\"1000\"]\n", []string{"c.toml:6: tenants.contoso.allow_uids: expected an array of integers, got an array containing a string"}},
		{"table for a string", "[apps.partner]\nclient_id = { id = \"x\" }\n" + tenant, []string{"c.toml:2: apps.partner.client_id: expected a string, got a table"}},
		{"table header for a string", app + "[apps.partner.scopes]\n" + tenant, []string{"c.toml:3: apps.partner.scopes: expected an array of strings, got a table"}},
		{"dotted key through a string", "keystore.name = \"memory\"\n" + app + tenant, []string{"c.toml:1: keystore: expected a string, got a table"}},
		{"integer for a table", "tenants = 5\n" + app, []string{"c.toml:1: tenants: expected a table, got the integer 5"}},
		{"integer for a tenant", app + "[tenants]\ncontoso = 5\n", []string{"c.toml:4: tenants.contoso: expected a table, got the integer 5"}},
		{"array of tables", "[[apps]]\nclient_id = \"00000000-0000-0000-0000-000000000000\"\n", []string{"c.toml:1: apps: expected a table, got an array of tables"}},
		{"date for a string", "keystore = 2024-01-01\n" + app + tenant, []string{"c.toml:1: keystore: expected a string, got a date"}},
		{"string not repeated", "prefetch_rate = \"hunter2\"\n" + app + tenant, []string{"prefetch_rate: expected an integer, got a string"}},
		{"zero prefetch rate", "prefetch_rate = 0\n" + app + tenant, []string{"c.toml:1: prefetch_rate: 0 is out of range (1 to 10000 requests per second)"}},
		{"zero duration", "min_valid = \"0s\"\n" + app + tenant, []string{"c.toml:1: min_valid: 0s is out of range"}},
		{"empty keystore", "keystore = \"\"\n" + app + tenant, []string{`c.toml:1: keystore: "" is not a keystore`}},
		{"duplicate key", app + tenant + "id = \"11111111-1111-1111-1111-111111111111\"\n", []string{"c.toml:6:"}},
		{"quoted tenant name", app + "[tenants.\"a\\nb\"]\nid = \"11111111-1111-1111-1111-111111111111\"\n", []string{`c.toml:3: tenants."a\nb": tenant name "a\nb" must be`}},
		{"bad duration", "min_valid = \"5 minutes\"\n" + app + tenant, []string{`c.toml:1: min_valid: "5 minutes" is not a duration; expected a duration string such as "5m"`}},
		{"negative duration", "refresh_before = \"-1m\"\n" + app + tenant, []string{"c.toml:1:", "refresh_before", "out of range"}},
		{"bad keystore", "keystore = \"vault\"\n" + app + tenant, []string{"c.toml:1:", "keystore", "keyring, systemd, directory or memory"}},
		{"directory without its dir", "keystore = \"directory\"\n" + app + tenant, []string{"credentials_dir", "is required"}},
		{"relative credentials_dir", "keystore = \"directory\"\ncredentials_dir = \"secrets\"\n" + app + tenant, []string{"c.toml:2:", "credentials_dir", "absolute path"}},
		{"credentials_dir with the keyring", "credentials_dir = \"/run/secrets\"\n" + app + tenant, []string{"credentials_dir", `only used with keystore = "directory"`}},
		{"relative assertion_file", app + "assertion_file = \"token\"\n" + tenant, []string{"apps.partner.assertion_file", "absolute path"}},
		{"send_x5c with an assertion file", app + "assertion_file = \"/t\"\nsend_x5c = true\n" + tenant, []string{"apps.partner.send_x5c", "assertion_file"}},
		{"send_x5c not a boolean", app + "send_x5c = \"yes\"\n" + tenant, []string{"apps.partner.send_x5c: expected a boolean, got a string"}},
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
		{"limit out of range", app + tenant + "[limits]\nmax_scopes = 0\n", []string{"c.toml:7:", "limits.max_scopes", "0 is out of range (1 to 64)"}},
		{"scope limit over what a scope may have", app + tenant + "[limits]\nmax_scope_bytes = 5000\n", []string{"c.toml:7:", "limits.max_scope_bytes", "5000 is out of range (64 to 4096)"}},
		{"limit of the wrong type", app + tenant + "[limits]\nidle_timeout = 60\n", []string{"c.toml:7:", "limits.idle_timeout", "expected a duration string"}},
		{"unknown limit", app + tenant + "[limits]\nmax_tokens = 1\n", []string{"c.toml:7:", `unknown key "limits.max_tokens"`}},
		{"per-uid connections over the total", "[limits]\nmax_connections = 10\nmax_connections_per_uid = 20\n" + app + tenant, []string{"c.toml:3:", "limits.max_connections_per_uid", "20 is more than limits.max_connections (10)"}},
		{"two resources in scopes", app + "scopes = [\"https://graph.microsoft.com/.default\", \"https://api.securitycenter.microsoft.com/.default\"]\n" + tenant, []string{"c.toml:3:", "apps.partner.scopes", "2 different scopes: a client-credentials token is for one resource"}},
		{"bad allowed scope", app + "allowed_scopes = [\"graph\"]\n" + tenant, []string{"c.toml:3:", "apps.partner.allowed_scopes", `"graph" is neither a resource nor its /.default scope`}},
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
			// One line, in TOML's words, never Go's; nothing of a
			// string value the schema refused.
			for _, bad := range []string{"\n", "broker.", "struct", "int64", "hunter2"} {
				if strings.Contains(err.Error(), bad) {
					t.Errorf("error %q contains %q", err, bad)
				}
			}
		})
	}
}

func TestParseConfigLimits(t *testing.T) {
	c, err := ParseConfig("c.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{
		MaxRequestBytes: DefaultMaxRequestBytes, MaxTenantBytes: DefaultMaxTenantBytes, MaxScopes: DefaultMaxScopes,
		MaxScopeBytes: DefaultMaxScopeBytes, MaxScopeSets: DefaultMaxScopeSets, MaxConnections: DefaultMaxConnections,
		MaxConnectionsPerUID: DefaultMaxConnectionsPerUID, IdleTimeout: DefaultIdleTimeout,
		ReacquireInterval: DefaultReacquireInterval, AuditDenialsPerMinute: DefaultAuditDenialsPerMinute,
	}
	if got := c.Limits(); got != want {
		t.Errorf("default limits = %+v, want %+v", got, want)
	}
	c, err = ParseConfig("c.toml", []byte(goodConfig+`
[limits]
max_scope_sets = 32
idle_timeout = "30s"
max_connections_per_uid = 8
`))
	if err != nil {
		t.Fatal(err)
	}
	want.MaxScopeSets, want.IdleTimeout, want.MaxConnectionsPerUID = 32, 30*time.Second, 8
	if got := c.Limits(); got != want {
		t.Errorf("limits = %+v, want %+v", got, want)
	}
}

func TestParseConfigAllowedScopes(t *testing.T) {
	c, err := ParseConfig("c.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Apps()[0].AllowedScopes; !slices.Equal(got, []string{DefaultScope}) {
		t.Errorf("default allowed_scopes = %v, want the app's scopes", got)
	}
	c, err = ParseConfig("c.toml", []byte(`
[apps.partner]
client_id = "00000000-0000-0000-0000-000000000000"
allowed_scopes = ["https://graph.microsoft.com", "https://api.securitycenter.microsoft.com/.default", "https://graph.microsoft.com/.default"]
[tenants.contoso]
id = "11111111-1111-1111-1111-111111111111"
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{DefaultScope, "https://graph.microsoft.com/.default"}
	if got := c.Apps()[0].AllowedScopes; !slices.Equal(got, want) {
		t.Errorf("allowed_scopes = %v, want %v (a resource means its /.default scope)", got, want)
	}
}

func TestValidateScope(t *testing.T) {
	for _, s := range []string{DefaultScope, "https://graph.microsoft.com/.default", "api://my-api/.default", "00000003-0000-0000-c000-000000000000/.default"} {
		if err := ValidateScope(s); err != nil {
			t.Errorf("ValidateScope(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "/.default", "https://graph.microsoft.com/User.Read", "openid", "http://x/.default", "https://a b/.default", strings.Repeat("a", 600) + "/.default", "https://" + strings.Repeat("a", 4096) + "/.default"} {
		if err := ValidateScope(s); err == nil {
			t.Errorf("ValidateScope(%q) accepted", s)
		}
	}
	// Longer than callers may ask for by default (limits.max_scope_bytes),
	// but a valid scope a configuration may list and raise the limit for.
	if long := "https://" + strings.Repeat("a", 600) + ".example/.default"; ValidateScope(long) != nil {
		t.Errorf("ValidateScope refuses a valid %d-byte scope", len(long))
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
	if a := tenantNamed(t, c, "contoso").Access; len(a.UIDs) != 1 || a.UIDs[0] != 4242 || len(a.GIDs) != 1 || a.GIDs[0] != 0 || a.Source != "tenants.contoso allow lists" {
		t.Errorf("contoso access = %+v", a)
	}
	if a := tenantNamed(t, c, "fabrikam").Access; a.Source != c.Access().Source || len(a.UIDs) != 1 || a.UIDs[0] != 65534 {
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

// Lines are right at the end of a large document too.
func TestParseConfigLineOfLastTenant(t *testing.T) {
	doc := manyTenantsConfig(3000)
	lines := strings.Count(string(doc), "\n")
	for _, tt := range []struct{ extra, want string }{
		{"foo = 1\n", fmt.Sprintf(`c.toml:%d: unknown key "tenants.t02999.foo"`, lines+1)},
		{"allow_uids = 1\n", fmt.Sprintf(`c.toml:%d: tenants.t02999.allow_uids: expected an array of integers`, lines+1)},
		{"allow_uids = [-1]\n", fmt.Sprintf(`c.toml:%d: tenants.t02999.allow_uids: -1 is not a uid`, lines+1)},
	} {
		_, err := ParseConfig("c.toml", append(doc[:len(doc):len(doc)], tt.extra...))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want %q", err, tt.want)
		}
	}
}

// The decoder applies TOML's rules on defining keys and tables as go-toml
// does: it accepts what go-toml accepts, with the same values, and refuses
// what it refuses.
func TestDecodeTOMLRules(t *testing.T) {
	const id = `"11111111-1111-1111-1111-111111111111"`
	tests := []struct {
		name, doc string
		ok        bool
	}{
		{"header after a header below it", "[tenants.a]\nid = " + id + "\n[tenants]\nb.id = " + id + "\n", true},
		{"dotted keys in one section", "apps.p.client_id = \"x\"\napps.p.scopes = []\n", true},
		{"header below a dotted table", "tenants.a.id = " + id + "\n[tenants.b]\nid = " + id + "\n", true},
		{"inline tables with dotted keys", "tenants = { a = { id = " + id + " }, b.id = " + id + ", b.app = \"p\" }\n", true},
		{"key twice", "min_valid = \"1m\"\nmin_valid = \"2m\"\n", false},
		{"table twice", "[apps.p]\n[apps.p]\n", false},
		{"header on a dotted table", "apps.p.client_id = \"x\"\n[apps.p]\n", false},
		{"header on a dotted table's parent", "tenants.a.id = " + id + "\n[tenants]\n", false},
		{"dotted key into a header's table", "[apps.p]\nclient_id = \"x\"\n[apps]\np.scopes = []\n", false},
		{"header into an inline table", "apps = {}\n[apps.p]\n", false},
		{"dotted key into an inline table", "[tenants]\na = { id = " + id + " }\na.app = \"p\"\n", false},
		{"key twice in an inline table", "tenants = { a = { id = " + id + ", id = " + id + " } }\n", false},
		{"value then table", "[tenants]\na.id = " + id + "\na.id.x = 1\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ours, err := parseDocument("c.toml", []byte(tt.doc))
			theirs, terr := decodeWithGoTOML([]byte(tt.doc))
			if (err == nil) != tt.ok || (terr == nil) != tt.ok {
				t.Fatalf("ours: %v; go-toml: %v; want ok %v", err, terr, tt.ok)
			}
			if err != nil && (!strings.HasPrefix(err.Error(), "c.toml:") || strings.Contains(err.Error(), "\n")) {
				t.Errorf("error %q is not one line naming the file and line", err)
			}
			if tt.ok && !sameDocument(ours, theirs) {
				t.Errorf("ours %+v, go-toml's %+v", ours, theirs)
			}
		})
	}
}

// Only ParseConfig and LoadConfig make a Config New accepts.
func TestNewRefusesZeroConfig(t *testing.T) {
	for _, c := range []*Config{nil, {}} {
		if _, err := New(c, Options{Store: keystore.NewMemory()}); err == nil || !strings.Contains(err.Error(), "ParseConfig or LoadConfig") {
			t.Errorf("New(%v) = %v, want a refusal naming ParseConfig and LoadConfig", c, err)
		}
	}
}
