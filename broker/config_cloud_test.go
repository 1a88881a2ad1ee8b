package broker

import (
	"os"
	"slices"
	"strings"
	"testing"
)

const cloudTenant = "[tenants.contoso]\nid = \"11111111-1111-1111-1111-111111111111\"\napp = \"partner\"\n"

// cloudApp is app partner with the given extra lines.
func cloudApp(lines ...string) string {
	return "[apps.partner]\nclient_id = \"00000000-0000-0000-0000-000000000000\"\n" + strings.Join(lines, "\n") + "\n"
}

func appNamed(t *testing.T, c *Config, name string) AppConfig {
	t.Helper()
	for _, a := range c.Apps() {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no app %q in %+v", name, c.Apps())
	return AppConfig{}
}

// Each cloud chooses its login host and its Defender for Endpoint scope;
// an app that names none is in the public cloud.
func TestParseConfigCloud(t *testing.T) {
	tests := []struct {
		line, cloud, host, scope string
	}{
		{"", "public", "https://login.microsoftonline.com", "https://api.securitycenter.microsoft.com/.default"},
		{`cloud = "public"`, "public", "https://login.microsoftonline.com", "https://api.securitycenter.microsoft.com/.default"},
		{`cloud = "usgov"`, "usgov", "https://login.microsoftonline.com", "https://api-gcc.securitycenter.microsoft.us/.default"},
		{`cloud = "usgovhigh"`, "usgovhigh", "https://login.microsoftonline.us", "https://api-gov.securitycenter.microsoft.us/.default"},
		{`cloud = "dod"`, "dod", "https://login.microsoftonline.us", "https://api-gov.securitycenter.microsoft.us/.default"},
	}
	for _, tt := range tests {
		c, err := ParseConfig("c.toml", []byte(cloudApp(tt.line)+cloudTenant))
		if err != nil {
			t.Fatalf("%s: %v", tt.line, err)
		}
		a := c.Apps()[0]
		if a.Cloud != tt.cloud || a.AuthorityHost != tt.host || !slices.Equal(a.Scopes, []string{tt.scope}) || !slices.Equal(a.AllowedScopes, []string{tt.scope}) {
			t.Errorf("%q: cloud %q, authority %q, scopes %v, allowed %v; want %q, %q, [%s]", tt.line, a.Cloud, a.AuthorityHost, a.Scopes, a.AllowedScopes, tt.cloud, tt.host, tt.scope)
		}
		if c.AuthorityHost() != DefaultAuthorityHost {
			t.Errorf("%q: top-level authority host %q, want the default", tt.line, c.AuthorityHost())
		}
	}
	// Scopes an app names are its own, whatever its cloud.
	c, err := ParseConfig("c.toml", []byte(cloudApp(`cloud = "usgovhigh"`, `scopes = ["https://graph.microsoft.us/.default"]`)+cloudTenant))
	if err != nil {
		t.Fatal(err)
	}
	if a := c.Apps()[0]; !slices.Equal(a.Scopes, []string{"https://graph.microsoft.us/.default"}) || a.AuthorityHost != "https://login.microsoftonline.us" {
		t.Errorf("app = %+v", a)
	}
}

// An explicit authority_host wins over the cloud's: the app's own, else
// the top-level one, which applies to every app without its own. One of
// Microsoft's login hosts in another cloud than an app names is an error;
// any other host (a proxy, a test server) is the operator's choice.
func TestParseConfigCloudAuthorityHost(t *testing.T) {
	const gov = "[apps.gov]\nclient_id = \"00000000-0000-0000-0000-00000000000b\"\ncloud = \"usgovhigh\"\n"
	const govTenant = "[tenants.agency]\nid = \"22222222-2222-2222-2222-222222222222\"\napp = \"gov\"\n"
	tests := []struct {
		name, doc         string
		partner, govHost  string
		partnerCloudScope string
	}{
		{"clouds choose", cloudApp() + gov + cloudTenant + govTenant,
			"https://login.microsoftonline.com", "https://login.microsoftonline.us", DefaultScope},
		{"top level for every app", "authority_host = \"https://idp.test:8443/\"\n" + cloudApp() + gov + cloudTenant + govTenant,
			"https://idp.test:8443", "https://idp.test:8443", DefaultScope},
		{"app's own over the top level", "authority_host = \"https://idp.test:8443\"\n" + cloudApp() + gov + "authority_host = \"https://gov-idp.test\"\n" + cloudTenant + govTenant,
			"https://idp.test:8443", "https://gov-idp.test", DefaultScope},
		{"top level in the app's cloud", "authority_host = \"https://login.microsoftonline.us\"\n" + cloudApp() + gov + cloudTenant + govTenant,
			"https://login.microsoftonline.us", "https://login.microsoftonline.us", DefaultScope},
		{"a public alias for GCC", "authority_host = \"https://login.microsoft.com\"\n" + cloudApp(`cloud = "usgov"`) + cloudTenant,
			"https://login.microsoft.com", "", "https://api-gcc.securitycenter.microsoft.us/.default"},
		{"another cloud without cloud, as before", "authority_host = \"https://login.chinacloudapi.cn\"\n" + cloudApp() + cloudTenant,
			"https://login.chinacloudapi.cn", "", DefaultScope},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig("c.toml", []byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if p := appNamed(t, c, "partner"); p.AuthorityHost != tt.partner || p.Scopes[0] != tt.partnerCloudScope {
				t.Errorf("partner = %+v, want authority %s and scope %s", p, tt.partner, tt.partnerCloudScope)
			}
			if tt.govHost == "" {
				return
			}
			if g := appNamed(t, c, "gov"); g.AuthorityHost != tt.govHost || g.Scopes[0] != "https://api-gov.securitycenter.microsoft.us/.default" {
				t.Errorf("gov = %+v, want authority %s and the GCC High scope", g, tt.govHost)
			}
		})
	}
}

func TestParseConfigCloudErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"unknown cloud", cloudApp(`cloud = "gcchigh"`) + cloudTenant,
			[]string{`c.toml:3: apps.partner.cloud: "gcchigh" is not a cloud (use public, usgov, usgovhigh, dod)`}},
		{"empty cloud", cloudApp(`cloud = ""`) + cloudTenant,
			[]string{`c.toml:3: apps.partner.cloud: "" is not a cloud (use public, usgov, usgovhigh, dod)`}},
		{"cloud of the wrong kind", cloudApp(`cloud = 1`) + cloudTenant,
			[]string{"c.toml:3: apps.partner.cloud: expected a string, got the integer 1"}},
		{"cloud in capitals", cloudApp(`cloud = "USGovHigh"`) + cloudTenant,
			[]string{`apps.partner.cloud: "USGovHigh" is not a cloud`}},
		{"top level in another cloud", "authority_host = \"https://login.microsoftonline.com\"\n" + cloudApp(`cloud = "usgovhigh"`) + cloudTenant,
			[]string{"c.toml:1: authority_host: https://login.microsoftonline.com is the login host of another cloud than apps.partner.cloud = \"usgovhigh\" (https://login.microsoftonline.us)",
				"leave authority_host out", "set apps.partner.authority_host"}},
		{"app's own in another cloud", cloudApp(`cloud = "dod"`, `authority_host = "https://login.windows.net"`) + cloudTenant,
			[]string{"c.toml:4: apps.partner.authority_host: https://login.windows.net is the login host of another cloud than apps.partner.cloud = \"dod\" (https://login.microsoftonline.us); leave it out or set it to https://login.microsoftonline.us"}},
		{"GCC at the US Government host", cloudApp(`cloud = "usgov"`, `authority_host = "https://login.microsoftonline.us"`) + cloudTenant,
			[]string{"apps.partner.authority_host", "another cloud than apps.partner.cloud = \"usgov\" (https://login.microsoftonline.com)"}},
		{"China for a named cloud", "authority_host = \"https://login.chinacloudapi.cn\"\n" + cloudApp(`cloud = "public"`) + cloudTenant,
			[]string{"c.toml:1: authority_host:", "another cloud than apps.partner.cloud = \"public\""}},
		{"app's own over http", cloudApp(`authority_host = "http://login.microsoftonline.us"`) + cloudTenant,
			[]string{`c.toml:3: apps.partner.authority_host: "http://login.microsoftonline.us" must be an https URL with no path`}},
		{"app's own empty", cloudApp(`authority_host = ""`) + cloudTenant,
			[]string{`c.toml:3: apps.partner.authority_host: "" must be an https URL`}},
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
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

// The example's commented cloud line, set to another cloud, moves the
// app's login host and default scope there: nothing else in the example
// pins them to the public cloud.
func TestExampleConfigCloud(t *testing.T) {
	data, err := os.ReadFile("../systemd/brokerd.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Replace(string(data), "\n#cloud = \"public\"\n", "\ncloud = \"usgovhigh\"\n", 1)
	if doc == string(data) {
		t.Fatal(`the example has no line #cloud = "public"`)
	}
	c, err := ParseConfig("example", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := "https://api-gov.securitycenter.microsoft.us/.default"
	if a := appNamed(t, c, "partner"); a.AuthorityHost != "https://login.microsoftonline.us" || !slices.Equal(a.Scopes, []string{want}) || !slices.Equal(a.AllowedScopes, []string{want}) {
		t.Errorf("partner in usgovhigh = %+v", a)
	}
}

// A tenant in another cloud than its app's is told how to set clouds.
func TestAnotherCloudRemedy(t *testing.T) {
	e := classifyIdPError(reply(400, entraBody("invalid_request", 90038), nil), testIdP)
	for _, want := range []string{"AADSTS90038", "app partner", `cloud = "usgov", "usgovhigh" or "dod" in [apps.NAME]`} {
		if !strings.Contains(e.Msg, want) {
			t.Errorf("message %q does not contain %q", e.Msg, want)
		}
	}
}
