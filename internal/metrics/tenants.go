package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tokenbroker/tokenbroker/broker"
)

// stateNames are the state label's values.
var stateNames = []struct {
	state broker.State
	name  string
}{
	{broker.StatePending, "pending"},
	{broker.StateReady, "ready"},
	{broker.StateDegraded, "degraded"},
	{broker.StateFailed, "failed"},
	{broker.StateNoCredential, "no_credential"},
}

var (
	stateDesc = prometheus.NewDesc("tokenbroker_tenant_state",
		"1 for the tenant's current state (pending, ready, degraded, failed, no_credential), 0 for the others.",
		[]string{"tenant", "state"}, nil)
	expiryDesc = prometheus.NewDesc("tokenbroker_tenant_token_expiry_seconds",
		"Seconds until the tenant's cached token for the app's scopes expires; 0 when it has none.",
		[]string{"tenant"}, nil)
	hitsDesc = prometheus.NewDesc("tokenbroker_tenant_cache_hits_total",
		"GetToken calls answered from the cache, over all of the tenant's scope sets.",
		[]string{"tenant"}, nil)
	missesDesc = prometheus.NewDesc("tokenbroker_tenant_cache_misses_total",
		"GetToken calls that found no usable cached token, over all of the tenant's scope sets.",
		[]string{"tenant"}, nil)
	tenantIdPDesc = prometheus.NewDesc("tokenbroker_tenant_idp_requests_total",
		"Token requests to Entra ID for the tenant, over all of its scope sets.",
		[]string{"tenant"}, nil)
)

// tenantCollector reads every configured tenant at scrape time, so that
// serving tokens pays nothing for these metrics. Tenants are labelled by
// their configured names only.
type tenantCollector struct{ b *broker.Broker }

func (c *tenantCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{stateDesc, expiryDesc, hitsDesc, missesDesc, tenantIdPDesc} {
		ch <- d
	}
}

func (c *tenantCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.b.Clock().Now()
	for _, t := range c.b.ListTenants() {
		for _, s := range stateNames {
			v := 0.0
			if t.State == s.state {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stateDesc, prometheus.GaugeValue, v, t.Name, s.name)
		}
		left := 0.0
		if !t.ExpiresAt.IsZero() {
			left = max(t.ExpiresAt.Sub(now).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, left, t.Name)
		ch <- prometheus.MustNewConstMetric(hitsDesc, prometheus.CounterValue, float64(t.CacheHits), t.Name)
		ch <- prometheus.MustNewConstMetric(missesDesc, prometheus.CounterValue, float64(t.CacheMisses), t.Name)
		ch <- prometheus.MustNewConstMetric(tenantIdPDesc, prometheus.CounterValue, float64(t.IdPRequests), t.Name)
	}
}
