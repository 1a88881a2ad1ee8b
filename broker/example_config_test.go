package broker

import "testing"

// The example shipped in systemd/ must stay valid.
func TestExampleConfigParses(t *testing.T) {
	c, err := LoadConfig("../systemd/brokerd.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	if tn := c.Tenants(); len(tn) != 2 || tn[0].Name != "contoso" || tn[0].Domains[0] != "contoso.onmicrosoft.com" {
		t.Errorf("unexpected example: %+v", tn)
	}
	// The example shows the defaults of [limits].
	d, err := ParseConfig("d.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limits() != d.Limits() {
		t.Errorf("the example's [limits] %+v are not the defaults %+v", c.Limits(), d.Limits())
	}
}
