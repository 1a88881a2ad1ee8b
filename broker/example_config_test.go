package broker

import "testing"

// The example shipped in systemd/ must stay valid.
func TestExampleConfigParses(t *testing.T) {
	c, err := LoadConfig("../systemd/brokerd.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tenants) != 2 || c.Tenants["contoso"].Domains[0] != "contoso.onmicrosoft.com" {
		t.Errorf("unexpected example: %+v", c.Tenants)
	}
}
