package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
)

// TestSoak runs 50 clients over 4 tenants with 10-second tokens for two
// minutes (SOAK_DURATION overrides), injecting a failing IdP answer every
// few seconds. No caller may get an error or a token with less than
// min_valid left; the IdP sees about one request per tenant per refresh
// interval; the heap and the goroutine count do not grow.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("two-minute soak; not run with -short")
	}
	t.Parallel()
	run := 2 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil && d > 0 {
		run = d
	}
	const (
		tenants  = 4
		clients  = 50
		lifetime = 10 * time.Second
		minValid = 2 * time.Second
	)
	s := newStack(t, stackConfig{tenants: tenants, lifetime: lifetime, topTOML: fmt.Sprintf("min_valid = %q\nidp_timeout = \"2s\"", minValid)})
	for i := range tenants {
		if _, err := s.c.GetToken(ctx(t), fmt.Sprintf("tenant%d", i), nil, minValid); err != nil {
			t.Fatal(err)
		}
	}

	var (
		calls, errs, short atomic.Int64
		stop               = make(chan struct{})
		wg                 sync.WaitGroup
	)
	for range clients {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				tenant := fmt.Sprintf("tenant%d", rand.IntN(tenants))
				// Not ctx(t): its cleanup would keep every call's context
				// until the test ends and look like a leak.
				callCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := s.c.GetToken(callCtx, tenant, nil, minValid)
				cancel()
				now := time.Now()
				calls.Add(1)
				switch {
				case err != nil:
					if errs.Add(1) <= 5 {
						t.Errorf("%s: %v", tenant, err)
					}
				case resp.GetExpiresAt().AsTime().Sub(now) < minValid:
					short.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	// One failing answer every 3 s, rotating through the fault kinds and
	// tenants, and now and then one for whichever tenant asks next.
	faults := []entratest.Fault{
		{Status: 503, Times: 1},
		{Status: 500, Times: 1},
		{Status: 429, Times: 1},
		{Status: 200, Body: "{", Times: 1},
		{WrongTenantID: tenantID(99), Times: 1},
	}
	wg.Go(func() {
		tick := time.NewTicker(3 * time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			f := faults[i%len(faults)]
			target := tenantID(i % tenants)
			if i%7 == 6 {
				target = ""
			}
			s.idp.SetFault(target, &f)
		}
	})

	heap := func() (uint64, int) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc, runtime.NumGoroutine()
	}
	time.Sleep(min(run/4, 20*time.Second))
	heapStart, goStart := heap()
	time.Sleep(run - min(run/4, 20*time.Second))
	heapEnd, goEnd := heap()
	close(stop)
	wg.Wait()

	total := 0
	for i := range tenants {
		total += s.idp.TokenRequests(tenantID(i))
	}
	t.Logf("soak %v: %d calls, %d errors, %d short tokens; IdP token requests %d (%.1f per tenant per minute); heap %d KiB -> %d KiB; goroutines %d -> %d",
		run, calls.Load(), errs.Load(), short.Load(), total, float64(total)/tenants/run.Minutes(), heapStart>>10, heapEnd>>10, goStart, goEnd)
	if errs.Load() != 0 || short.Load() != 0 {
		t.Errorf("%d errors and %d tokens with less than min_valid left, want none", errs.Load(), short.Load())
	}
	// 10 s tokens refresh 4-5 s after issue: 12-15 a minute per tenant,
	// plus one retry per injected fault (one every 3 s).
	perTenantMin := run.Seconds() / 5
	perTenantMax := run.Seconds()/4 + run.Seconds()/3
	for i := range tenants {
		if n := float64(s.idp.TokenRequests(tenantID(i))); n < perTenantMin || n > perTenantMax+2 {
			t.Errorf("tenant%d: %v token requests in %v, want %.0f to %.0f", i, n, run, perTenantMin, perTenantMax+2)
		}
	}
	if heapEnd > heapStart+heapStart/2+8<<20 {
		t.Errorf("heap grew from %d KiB to %d KiB", heapStart>>10, heapEnd>>10)
	}
	if goEnd > goStart+20 {
		t.Errorf("goroutines grew from %d to %d", goStart, goEnd)
	}
}
