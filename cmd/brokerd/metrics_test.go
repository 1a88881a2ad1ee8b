package main_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tokenbroker/tokenbroker/internal/testuser"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// scraper fetches /metrics from brokerd's --metrics-listen address,
// never through a proxy.
type scraper struct {
	t    *testing.T
	base string
	hc   *http.Client
}

// tcpScraper reads the address brokerd logged it serves metrics on.
func tcpScraper(t *testing.T, p *proc) *scraper {
	t.Helper()
	p.waitLog(t, `msg="metrics serving"`)
	m := regexp.MustCompile(`msg="metrics serving" address=(\S+)`).FindStringSubmatch(p.stderr.String())
	if m == nil {
		t.Fatalf("no address in brokerd's metrics line:\n%s", p.stderr.String())
	}
	return &scraper{t: t, base: "http://" + m[1], hc: &http.Client{Transport: &http.Transport{Proxy: nil}}}
}

// unixScraper scrapes over the Unix socket at path.
func unixScraper(t *testing.T, path string) *scraper {
	tr := &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}
	return &scraper{t: t, base: "http://brokerd", hc: &http.Client{Transport: tr}}
}

// get returns the status and body of GET path.
func (s *scraper) get(path string) (int, string) {
	s.t.Helper()
	resp, err := s.hc.Get(s.base + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// scrape is one parsed scrape and its text.
type scrape struct {
	text     string
	families map[string]*dto.MetricFamily
}

func (s *scraper) scrape() scrape {
	s.t.Helper()
	code, text := s.get("/metrics")
	if code != http.StatusOK {
		s.t.Fatalf("GET /metrics: status %d:\n%s", code, text)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		s.t.Fatalf("parsing the scrape: %v\n%s", err, text)
	}
	return scrape{text: text, families: fams}
}

// value is the value of name's series with exactly the labels given
// (name=value pairs); it fails the test when there is none.
func (sc scrape) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	f, ok := sc.families[name]
	if !ok {
		t.Fatalf("no metric %s in the scrape:\n%s", name, sc.text)
	}
	if f.GetHelp() == "" {
		t.Errorf("metric %s has no HELP", name)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v in the scrape:\n%s", name, labels, sc.text)
	return 0
}

// labelValues are every label value of the scrape.
func (sc scrape) labelValues() []string {
	var out []string
	for _, f := range sc.families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}

// brokerd's metrics move with brokerctl's calls, and carry no token, no
// secret and no string a caller sent: not a bogus tenant, not one a
// denied user asked for.
func TestMetrics(t *testing.T) {
	testuser.RequireRoot(t, "act as a second user")
	t.Parallel()
	s := newSession(t)
	w := sharedWorld(t, s, "", nil)
	d := w.startShared(s, "--metrics-listen", "127.0.0.1:0")
	sc := tcpScraper(t, d)
	s.waitStates(map[string]brokerv1.TenantState{
		"northwind": brokerv1.TenantState_TENANT_STATE_READY,
		"woodgrove": brokerv1.TenantState_TENANT_STATE_READY,
	})

	before := sc.scrape()
	tokens := []string{s.get("northwind"), s.get("northwind")}
	const bogus = `evil"label\n{x="1"}`
	s.ctl("", "get", "--tenant", bogus).wantExit(t, 3) // root: NotFound
	s.ctlAs(nobody, s.socket, "", "get", "--tenant", "northwind").wantExit(t, 4, "PermissionDenied")
	s.ctlAs(nobody, s.socket, "", "get", "--tenant", "nobody-asked-this").wantExit(t, 4, "PermissionDenied")
	after := sc.scrape()

	moved := func(want float64, name string, labels ...string) {
		t.Helper()
		if got := after.value(t, name, labels...) - before.value(t, name, labels...); got != want {
			t.Errorf("%s%v moved by %v, want %v", name, labels, got, want)
		}
	}
	moved(2, "tokenbroker_get_token_calls_total", "code", "OK")
	moved(1, "tokenbroker_get_token_calls_total", "code", "NotFound")
	moved(2, "tokenbroker_get_token_calls_total", "code", "PermissionDenied")
	moved(2, "tokenbroker_tenant_cache_hits_total", "tenant", "northwind")
	if got := after.value(t, "tokenbroker_denials_total", "uid", fmt.Sprint(nobodyUID)); got < 2 {
		t.Errorf("tokenbroker_denials_total{uid=%d} = %v, want at least 2", nobodyUID, got)
	}
	// Each tenant's first fetch succeeded.
	if got := after.value(t, "tokenbroker_idp_requests_total", "outcome", "success", "aadsts", "0"); got < 2 {
		t.Errorf("successful IdP requests = %v, want at least 2", got)
	}
	if got := after.value(t, "tokenbroker_idp_request_duration_seconds"); got < 2 {
		t.Errorf("IdP request latency histogram has %v samples, want at least 2", got)
	}
	for _, tn := range []string{"northwind", "woodgrove"} {
		if got := after.value(t, "tokenbroker_tenant_state", "tenant", tn, "state", "ready"); got != 1 {
			t.Errorf("tenant_state{%s,ready} = %v, want 1", tn, got)
		}
		if got := after.value(t, "tokenbroker_tenant_state", "tenant", tn, "state", "failed"); got != 0 {
			t.Errorf("tenant_state{%s,failed} = %v, want 0", tn, got)
		}
		if got := after.value(t, "tokenbroker_tenant_token_expiry_seconds", "tenant", tn); got <= 0 {
			t.Errorf("tenant_token_expiry_seconds{%s} = %v, want > 0", tn, got)
		}
	}
	after.value(t, "tokenbroker_open_connections")
	after.value(t, "tokenbroker_keystore_errors_total", "op", "get")

	// Only the configured tenant names are tenant labels.
	for _, f := range after.families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "tenant" && l.GetValue() != "northwind" && l.GetValue() != "woodgrove" {
					t.Errorf("%s has tenant label %q, not a configured name", f.GetName(), l.GetValue())
				}
			}
		}
	}
	for _, bad := range append([]string{w.secret, "evil", "nobody-asked-this", "eyJ"}, append(tokens, w.idp.Issued()...)...) {
		if strings.Contains(after.text, bad) {
			t.Errorf("the scrape contains %.24q:\n%s", bad, after.text)
		}
	}
	for _, v := range after.labelValues() {
		if strings.ContainsAny(v, `"\{}`) {
			t.Errorf("label value %q looks like a caller's string", v)
		}
	}

	// /metrics and nothing else.
	for _, path := range []string{"/", "/debug/pprof/", "/metrics/x"} {
		if code, _ := sc.get(path); code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", path, code)
		}
	}
	s.checkNoLeaks([]string{w.secret}, w.idp.Issued())
}

// On a Unix socket the endpoint is brokerd's user's alone (0600 without
// --socket-group), and an AADSTS code the broker classified is a label.
func TestMetricsUnixSocket(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	path := filepath.Join(s.dir, "m", "metrics.sock")
	d := s.brokerd(nil, "--dev", "--socket", s.socket, "--metrics-listen", "unix:"+path)
	d.waitServing(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Geteuid()) {
		t.Errorf("metrics socket is %v owned by %d, want 0600 owned by %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid, os.Geteuid())
	}
	// tailspin has not consented (AADSTS700016).
	s.waitStates(map[string]brokerv1.TenantState{"tailspin": brokerv1.TenantState_TENANT_STATE_FAILED})
	sc := unixScraper(t, path).scrape()
	if got := sc.value(t, "tokenbroker_idp_requests_total", "outcome", "failure", "aadsts", "700016"); got < 1 {
		t.Errorf("failed IdP requests with AADSTS700016 = %v, want at least 1", got)
	}
	if got := sc.value(t, "tokenbroker_tenant_state", "tenant", "tailspin", "state", "failed"); got != 1 {
		t.Errorf("tenant_state{tailspin,failed} = %v, want 1", got)
	}
	if got := sc.value(t, "tokenbroker_tenant_token_expiry_seconds", "tenant", "tailspin"); got != 0 {
		t.Errorf("tenant_token_expiry_seconds{tailspin} = %v, want 0 (no token)", got)
	}
}

// The endpoint has no authentication: any address but a loopback one or
// a Unix socket is refused before brokerd serves anything.
func TestMetricsListenRefused(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	for _, addr := range []string{"0.0.0.0:9464", ":9464", "[::]:9464", "192.0.2.1:9464", "example.com:9464", "127.0.0.1", "unix:relative.sock", "127.0.0.1:http"} {
		p := s.brokerd(nil, "--dev", "--socket", s.socket, "--metrics-listen", addr)
		if code := p.wait(t); code != 1 {
			t.Errorf("--metrics-listen %s: exit %d, want 1", addr, code)
		}
		if e := p.stderr.String(); !strings.Contains(e, "--metrics-listen") || strings.Contains(e, "serving") {
			t.Errorf("--metrics-listen %s: stderr does not refuse the address:\n%s", addr, e)
		}
	}
}
