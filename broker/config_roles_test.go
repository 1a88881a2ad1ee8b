package broker

import (
	"slices"
	"strings"
	"testing"
)

func TestParseConfigRequiredRoles(t *testing.T) {
	const app = "[apps.partner]\nclient_id = \"00000000-0000-0000-0000-000000000000\"\n"
	const tenant = "[tenants.contoso]\nid = \"11111111-1111-1111-1111-111111111111\"\n"

	c, err := ParseConfig("c.toml", []byte(app+tenant))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Apps()[0].RequiredRoles; got != nil {
		t.Errorf("default required_roles = %v, want none", got)
	}
	c, err = ParseConfig("c.toml", []byte(app+`required_roles = ["Machine.Isolate", "Alert.Read.All", "Machine.Isolate"]`+"\n"+tenant))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Apps()[0].RequiredRoles, []string{"Alert.Read.All", "Machine.Isolate"}; !slices.Equal(got, want) {
		t.Errorf("required_roles = %v, want %v (sorted, once each)", got, want)
	}

	for _, tt := range []struct{ name, value, want string }{
		{"empty role", `[""]`, `c.toml:3: apps.partner.required_roles: "" is not a role`},
		{"space", `["Alert.Read All"]`, `"Alert.Read All" is not a role: give the value of an application permission, such as "Alert.Read.All" (1-256 printable characters, no spaces)`},
		{"control character", `["Alert\u001b[31m"]`, `is not a role`},
		{"too long", `["` + strings.Repeat("a", 257) + `"]`, `is not a role`},
		{"not strings", `[1]`, `apps.partner.required_roles`},
		{"a string", `"Alert.Read.All"`, `apps.partner.required_roles: expected an array of strings`},
	} {
		_, err := ParseConfig("c.toml", []byte(app+"required_roles = "+tt.value+"\n"+tenant))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}
