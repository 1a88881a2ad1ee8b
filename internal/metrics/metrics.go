// Package metrics is brokerd's Prometheus endpoint: counters of GetToken
// calls, requests to Entra ID, keystore errors and denials, fed by the
// broker's and the server's observers, and the tenants' state, expiry and
// cache counters, read from broker.ListTenants at each scrape.
//
// Security role: the endpoint has no authentication, so it is served only
// on a loopback TCP address or a Unix socket (Listen), and nothing in it
// is secret or chosen by a caller: no token, no secret, and no string a
// caller sent. Tenants are named by their configured names, AADSTS codes
// are the integers the broker classified (at most maxAADSTSCodes distinct
// ones; the rest are "other"), uids are numbers.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/codes"

	"github.com/tokenbroker/tokenbroker/broker"
)

// maxAADSTSCodes bounds the distinct aadsts label values: Entra ID's
// answers, not the configuration, decide them.
const maxAADSTSCodes = 32

// Metrics holds brokerd's metrics in a registry of its own. It is a
// broker.Observer and a server.Observer.
type Metrics struct {
	reg *prometheus.Registry

	tokenCalls     *prometheus.CounterVec
	idpRequests    *prometheus.CounterVec
	idpDuration    prometheus.Histogram
	keystoreErrors *prometheus.CounterVec
	denials        *prometheus.CounterVec
	reloads        *prometheus.CounterVec
	reloadOK       prometheus.Gauge

	mu     sync.Mutex
	aadsts map[int]string // guarded by mu: the label of each code seen
}

// New returns the metrics that need no broker: the observed counters, and
// the Go runtime's and the process's metrics.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		tokenCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_get_token_calls_total",
			Help: "GetToken calls by gRPC status code (OK, PermissionDenied, Unavailable, ...), denials included.",
		}, []string{"code"}),
		idpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_idp_requests_total",
			Help: "Token requests to Entra ID by outcome (success or failure) and AADSTS error code (0 when none; other past " + strconv.Itoa(maxAADSTSCodes) + " distinct codes).",
		}, []string{"outcome", "aadsts"}),
		idpDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tokenbroker_idp_request_duration_seconds",
			Help:    "Time a token acquisition took from Entra ID, the wait for a max_idp_requests slot included.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		keystoreErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_keystore_errors_total",
			Help: "Failed keystore calls by operation (get, set, delete); a credential that is not stored is no error.",
		}, []string{"op"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_denials_total",
			Help: "Calls the authorizer denied, by the caller's uid.",
		}, []string{"uid"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tokenbroker_config_reloads_total",
			Help: "Configuration reloads (SIGHUP, brokerctl reload) by outcome: applied, or refused (the configuration in use keeps serving).",
		}, []string{"outcome"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tokenbroker_config_last_reload_successful",
			Help: "1 if the last configuration reload was applied (or none was tried), 0 if it was refused: the file on disk is not what brokerd serves.",
		}),
		aadsts: map[int]string{},
	}
	// Series that exist before anything happens, so that rate() and
	// absence alerts work from the first scrape.
	for _, c := range []codes.Code{codes.OK, codes.PermissionDenied, codes.NotFound, codes.Unavailable, codes.FailedPrecondition} {
		m.tokenCalls.WithLabelValues(c.String())
	}
	m.idpRequests.WithLabelValues("success", "0")
	for _, op := range []string{"get", "set", "delete"} {
		m.keystoreErrors.WithLabelValues(op)
	}
	m.reloads.WithLabelValues("applied")
	m.reloads.WithLabelValues("refused")
	m.reloadOK.Set(1)
	m.reg.MustRegister(m.tokenCalls, m.idpRequests, m.idpDuration, m.keystoreErrors, m.denials, m.reloads, m.reloadOK,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Watch adds the metrics read at each scrape: every tenant's state, token
// expiry and counters from b, and the open connections from conns.
func (m *Metrics) Watch(b *broker.Broker, conns func() int) {
	m.reg.MustRegister(&tenantCollector{b: b}, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tokenbroker_open_connections",
		Help: "Callers' connections open on brokerd's socket.",
	}, func() float64 { return float64(conns()) }))
}

// IdPRequest counts a token request to Entra ID (broker.Observer).
func (m *Metrics) IdPRequest(_ string, aadsts int, ok bool, took time.Duration) {
	outcome := "failure"
	if ok {
		outcome = "success"
	}
	m.idpRequests.WithLabelValues(outcome, m.aadstsLabel(aadsts)).Inc()
	m.idpDuration.Observe(took.Seconds())
}

// aadstsLabel is code's label: its decimal number, or "other" once
// maxAADSTSCodes distinct codes have been seen.
func (m *Metrics) aadstsLabel(code int) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.aadsts[code]; ok {
		return l
	}
	l := "other"
	if len(m.aadsts) < maxAADSTSCodes {
		l = strconv.Itoa(code)
	}
	m.aadsts[code] = l
	return l
}

// KeystoreError counts a failed keystore call (broker.Observer).
func (m *Metrics) KeystoreError(op string) { m.keystoreErrors.WithLabelValues(op).Inc() }

// TokenCall counts a GetToken call (server.Observer).
func (m *Metrics) TokenCall(code codes.Code) { m.tokenCalls.WithLabelValues(code.String()).Inc() }

// Denied counts a denied call (server.Observer).
func (m *Metrics) Denied(uid uint32) {
	m.denials.WithLabelValues(strconv.FormatUint(uint64(uid), 10)).Inc()
}

// Reloaded counts a configuration reload, applied or refused.
func (m *Metrics) Reloaded(applied bool) {
	outcome, ok := "refused", 0.0
	if applied {
		outcome, ok = "applied", 1
	}
	m.reloads.WithLabelValues(outcome).Inc()
	m.reloadOK.Set(ok)
}
