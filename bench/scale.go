//go:build linux

package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// scaleOptions say how big the scale run is.
type scaleOptions struct {
	tenants     int           // configured tenants
	rate        int           // prefetch_rate, token requests per second
	concurrency int           // prefetch_concurrency; 0 = brokerd's default
	idle        time.Duration // window for idle CPU
	lifetime    time.Duration // short token lifetime for the steady-state refresh window
	steady      time.Duration // steady-state refresh window
	idpDelay    time.Duration // latency the fake IdP adds to every token request
}

// scaleResult is what measureScale found.
type scaleResult struct {
	rssEmpty, rssWarm, hwm int64 // kB: no credential (nothing acquired), after warm-up; peak
	warmup                 time.Duration
	warmupRates            []float64 // IdP token requests per second during warm-up
	idleCPU                float64   // fraction of one core
	steadyRates            []float64 // IdP token requests per second, steady-state refresh
	readyAtEnd             int       // tenants READY after the steady window
	statesAtEnd            string
	errorsAtEnd            []string // the most common last errors of tenants not READY, with counts
}

// sampler records the fake IdP's token request counter once a second.
type sampler struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	done    chan struct{}
}

type sample struct {
	at time.Time
	n  int
}

func startSampler(count func() int) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	record := func() {
		s.mu.Lock()
		s.samples = append(s.samples, sample{time.Now(), count()})
		s.mu.Unlock()
	}
	record()
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				record()
			}
		}
	}()
	return s
}

func (s *sampler) close() { close(s.stop); <-s.done }

// rates returns the token requests per second of each sampling interval
// that lies within [from, to].
func (s *sampler) rates(from, to time.Time) []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []float64
	for i := 1; i < len(s.samples); i++ {
		a, b := s.samples[i-1], s.samples[i]
		if a.at.Before(from) || b.at.After(to) {
			continue
		}
		out = append(out, float64(b.n-a.n)/b.at.Sub(a.at).Seconds())
	}
	return out
}

func roundAll(fs []float64) []int {
	out := make([]int, len(fs))
	for i, f := range fs {
		out[i] = int(f + 0.5)
	}
	return out
}

func maxMean(rates []float64) (hi, mean float64) {
	for _, r := range rates {
		hi = max(hi, r)
		mean += r
	}
	if len(rates) > 0 {
		mean /= float64(len(rates))
	}
	return hi, mean
}

// measureScale runs a real brokerd with o.tenants tenants against the fake
// IdP in this process:
//
//  1. brokerd starts with an empty keystore; its start-up pass finds no
//     credential for any tenant. Its RSS then is the empty daemon's: same
//     configuration, nothing acquired.
//  2. `brokerctl credential set` stores the secret, which makes brokerd
//     acquire every tenant at prefetch_rate. Warm-up is the time from the
//     command's start until ListTenants shows every tenant READY.
//  3. With hour-long tokens nothing is due: CPU over o.idle, then RSS.
//  4. The IdP now issues o.lifetime tokens and the credential is set again,
//     so every tenant is re-acquired (at prefetch_rate) with a short token;
//     then the IdP's token requests are counted each second over o.steady,
//     while brokerd refreshes on its own.
func measureScale(ctx context.Context, bin binaries, o scaleOptions) (r scaleResult, err error) {
	progress("scale: fake IdP with %d tenants", o.tenants)
	idp, err := newIdP(o.tenants)
	if err != nil {
		return r, err
	}
	defer idp.Close()
	if o.idpDelay > 0 {
		idp.SetFault("", &entratest.Fault{Delay: o.idpDelay})
	}
	dir, err := os.MkdirTemp("", "bb")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	extra := []string{fmt.Sprintf("prefetch_rate = %d", o.rate), `min_valid = "10s"`}
	if o.concurrency > 0 {
		extra = append(extra, fmt.Sprintf("prefetch_concurrency = %d", o.concurrency))
	}
	d, err := startDaemon(ctx, bin, dir, configTOML(idp.URL(), o.tenants, extra...), idp)
	if err != nil {
		return r, err
	}
	defer d.stop()
	c, err := client.Dial(d.socket)
	if err != nil {
		return r, err
	}
	defer c.Close()
	pace := time.Duration(o.tenants/o.rate+1) * time.Second // the pacing floor of one pass

	// 1. The empty daemon.
	progress("scale: brokerd up (pid %d); waiting for its start-up pass without a credential", d.pid())
	err = poll(ctx, 3*pace+time.Minute, 500*time.Millisecond, func() (bool, error) {
		n, _, err := countStates(ctx, c)
		return n[brokerv1.TenantState_TENANT_STATE_NO_CREDENTIAL] == o.tenants, err
	})
	if err != nil {
		return r, fmt.Errorf("waiting for every tenant to report no credential: %w", err)
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return r, err
	}
	if r.rssEmpty, err = procStatusKB(d.pid(), "VmRSS"); err != nil {
		return r, err
	}

	// 2. Warm-up.
	samples := startSampler(idp.TotalTokenRequests)
	defer samples.close()
	progress("scale: empty daemon RSS %d kB; setting the credential", r.rssEmpty)
	start := time.Now()
	if err := setCredential(ctx, bin, d.socket); err != nil {
		return r, err
	}
	var last map[brokerv1.TenantState]int
	err = poll(ctx, 3*pace+2*time.Minute, 500*time.Millisecond, func() (bool, error) {
		n, _, err := countStates(ctx, c)
		last = n
		return n[brokerv1.TenantState_TENANT_STATE_READY] == o.tenants, err
	})
	if err != nil {
		return r, fmt.Errorf("waiting for every tenant to be READY (states %v): %w", last, err)
	}
	r.warmup = time.Since(start)
	r.warmupRates = samples.rates(start, time.Now())
	progress("scale: IdP token requests per second, warm-up: %v", roundAll(r.warmupRates))
	progress("scale: all %d READY after %v", o.tenants, r.warmup.Round(time.Millisecond))

	// 3. Idle: hour-long tokens, nothing due; nobody calls brokerd.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return r, err
	}
	cpu0, err := procCPU(d.pid())
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := sleep(ctx, o.idle); err != nil {
		return r, err
	}
	cpu1, err := procCPU(d.pid())
	if err != nil {
		return r, err
	}
	r.idleCPU = float64(cpu1-cpu0) / float64(time.Since(t0))
	if r.rssWarm, err = procStatusKB(d.pid(), "VmRSS"); err != nil {
		return r, err
	}
	if r.hwm, err = procStatusKB(d.pid(), "VmHWM"); err != nil {
		return r, err
	}
	progress("scale: idle CPU %.2f%% of a core, RSS %d kB; re-acquiring with %v tokens", 100*r.idleCPU, r.rssWarm, o.lifetime)

	// 4. Steady-state refresh with short tokens.
	idp.SetLifetime(o.lifetime)
	n0 := idp.TotalTokenRequests()
	if err := setCredential(ctx, bin, d.socket); err != nil {
		return r, err
	}
	// The verification request and one per tenant.
	err = poll(ctx, 3*pace+2*time.Minute, 200*time.Millisecond, func() (bool, error) {
		return idp.TotalTokenRequests()-n0 >= o.tenants+1, nil
	})
	if err != nil {
		return r, fmt.Errorf("waiting for the re-acquisition: %w", err)
	}
	progress("scale: every tenant holds a %v token; counting IdP requests for %v", o.lifetime, o.steady)
	from := time.Now()
	if err := sleep(ctx, o.steady); err != nil {
		return r, err
	}
	r.steadyRates = samples.rates(from, time.Now())
	progress("scale: IdP token requests per second, steady state: %v", roundAll(r.steadyRates))
	n, list, err := countStates(ctx, c)
	if err != nil {
		return r, err
	}
	r.readyAtEnd = n[brokerv1.TenantState_TENANT_STATE_READY]
	r.statesAtEnd = fmt.Sprint(n)
	r.errorsAtEnd = commonErrors(list, 3)
	return r, nil
}

// commonErrors returns the k most common last errors of the tenants, each
// with how many tenants have it. Tenant names and times are masked so that
// equal causes count together.
func commonErrors(list []*brokerv1.TenantStatus, k int) []string {
	mask := regexp.MustCompile(`tenant[0-9]+|[0-9a-f]{8}-[0-9a-f-]{27}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9:]+)`)
	count := map[string]int{}
	for _, t := range list {
		if e := t.GetLastError(); e != "" {
			count[mask.ReplaceAllString(e, "…")]++
		}
	}
	keys := slices.Collect(maps.Keys(count))
	slices.SortFunc(keys, func(a, b string) int { return count[b] - count[a] })
	var out []string
	for _, e := range keys[:min(k, len(keys))] {
		out = append(out, fmt.Sprintf("%d× %q", count[e], e))
	}
	return out
}

// expectedRefreshRate is the mean token requests per second that n tenants
// with tokens of the given lifetime cause when refreshed by the broker's
// rule, expires - min(refresh_before, lifetime/2) - jitter, jitter uniform
// in [0, lifetime/10): each tenant once per lifetime - lead on average.
func expectedRefreshRate(n int, lifetime, refreshBefore time.Duration) float64 {
	lead := min(refreshBefore, lifetime/2) + lifetime/20
	return float64(n) / (lifetime - lead).Seconds()
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
