package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tokenbroker/tokenbroker/broker/server"
)

// Entra ID, not the configuration, chooses AADSTS codes: past
// maxAADSTSCodes distinct ones, new codes are counted as "other".
func TestAADSTSLabelsBounded(t *testing.T) {
	m := New()
	for code := 1; code <= 3*maxAADSTSCodes; code++ {
		m.IdPRequest("t", 700000+code, false, 0)
	}
	m.IdPRequest("t", 700001, false, 0) // seen first: keeps its label
	if n := testutil.CollectAndCount(m.idpRequests); n > maxAADSTSCodes+2 {
		t.Errorf("%d idp_requests series, want at most %d", n, maxAADSTSCodes+2)
	}
	if got := testutil.ToFloat64(m.idpRequests.WithLabelValues("failure", "700001")); got != 2 {
		t.Errorf("aadsts=700001 counted %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.idpRequests.WithLabelValues("failure", "other")); got != 2*maxAADSTSCodes {
		t.Errorf("aadsts=other counted %v, want %d", got, 2*maxAADSTSCodes)
	}
}

func TestListen(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		l, err := Listen(addr, server.OwnerOnly)
		if err != nil {
			t.Errorf("Listen(%q): %v", addr, err)
			continue
		}
		if host := l.Addr().String(); !strings.HasPrefix(host, "127.0.0.1:") {
			t.Errorf("Listen(%q) listens on %s, want 127.0.0.1", addr, host)
		}
		l.Close()
	}
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "10.0.0.1:0", "[fe80::1%lo]:0", "[::ffff:8.8.8.8]:0", "example.com:0",
		"127.0.0.1", "127.0.0.1:65536", "127.0.0.1:-1", "unix:", "unix:rel.sock", ""} {
		l, err := Listen(addr, server.OwnerOnly)
		if err == nil {
			l.Close()
			t.Errorf("Listen(%q) accepted", addr)
			continue
		}
		if !strings.HasPrefix(err.Error(), "--metrics-listen") {
			t.Errorf("Listen(%q): %v; want an error naming --metrics-listen", addr, err)
		}
	}
}

// A refused reload shows until one is applied.
func TestReloads(t *testing.T) {
	m := New()
	if got := testutil.ToFloat64(m.reloadOK); got != 1 {
		t.Errorf("last_reload_successful %v before any reload, want 1", got)
	}
	m.Reloaded(false)
	if got := testutil.ToFloat64(m.reloadOK); got != 0 {
		t.Errorf("last_reload_successful %v after a refused reload, want 0", got)
	}
	m.Reloaded(true)
	m.Reloaded(true)
	if got := testutil.ToFloat64(m.reloadOK); got != 1 {
		t.Errorf("last_reload_successful %v after an applied reload, want 1", got)
	}
	if a, r := testutil.ToFloat64(m.reloads.WithLabelValues("applied")), testutil.ToFloat64(m.reloads.WithLabelValues("refused")); a != 2 || r != 1 {
		t.Errorf("reloads: applied %v refused %v, want 2 and 1", a, r)
	}
}
