package broker

import (
	"fmt"
	"strings"
	"testing"
)

// manyTenantsConfig is a configuration with one app and n tenants, each
// with a domain, as a large MSSP's would be.
func manyTenantsConfig(n int) []byte {
	var doc strings.Builder
	doc.WriteString("keystore = \"memory\"\nmin_valid = \"5m\"\n[apps.partner]\nclient_id = \"00000000-0000-0000-0000-000000000000\"\n")
	for i := range n {
		fmt.Fprintf(&doc, "\n[tenants.t%05d]\nid = \"%08x-0000-4000-8000-000000000000\"\napp = \"partner\"\ndomains = [\"t%05d.onmicrosoft.com\"]\n", i, i, i)
	}
	return []byte(doc.String())
}

func benchmarkParseConfig(b *testing.B, n int) {
	doc := manyTenantsConfig(n)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseConfig("bench.toml", doc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseConfig10000Tenants(b *testing.B) { benchmarkParseConfig(b, 10000) }

func BenchmarkParseConfig20000Tenants(b *testing.B) { benchmarkParseConfig(b, 20000) }
