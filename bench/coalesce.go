//go:build linux

package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// coalesceResult is what measureCoalescing found.
type coalesceResult struct {
	requests     int           // IdP token requests the calls caused
	wrongTenants int           // tenants that saw other than exactly one request
	all          time.Duration // from the calls' start until the last answer
	one          time.Duration // one cold GetToken of one more tenant, alone
}

// measureCoalescing makes calls concurrent GetToken calls spread evenly
// over tenants cold tenants (nothing prefetched), over 4 connections, and
// counts the token requests that reach the fake IdP: one per tenant when
// the broker shares each tenant's acquisition among its waiters. delay, if
// non-zero, is added to every token request at the IdP (a fault), standing
// for Entra ID's own latency. Before, one cold GetToken of a spare tenant
// alone is timed as the baseline of the time to answer everyone.
func measureCoalescing(ctx context.Context, tenants, calls int, delay time.Duration) (coalesceResult, error) {
	var r coalesceResult
	s, err := newStack(tenants+1, false) // the last tenant is the spare
	if err != nil {
		return r, err
	}
	defer s.close()
	if delay > 0 {
		s.idp.SetFault("", &entratest.Fault{Delay: delay})
	}
	clients := make([]brokerv1.BrokerServiceClient, 4)
	for i := range clients {
		conn, err := s.dial(ctx)
		if err != nil {
			return r, err
		}
		defer conn.Close()
		clients[i] = brokerv1.NewBrokerServiceClient(conn)
	}
	get := func(c brokerv1.BrokerServiceClient, i int) error {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		resp, err := c.GetToken(ctx, &brokerv1.GetTokenRequest{Tenant: tenantName(i)}, grpc.WaitForReady(true))
		if err != nil {
			return fmt.Errorf("GetToken %s: %w", tenantName(i), err)
		}
		if resp.GetTenantId() != tenantID(i) {
			return fmt.Errorf("GetToken %s: token for tenant %s", tenantName(i), resp.GetTenantId())
		}
		return nil
	}

	start := time.Now()
	if err := get(clients[0], tenants); err != nil {
		return r, err
	}
	r.one = time.Since(start)
	before := s.idp.TotalTokenRequests()

	var (
		wg    sync.WaitGroup
		ready sync.WaitGroup
		gate  = make(chan struct{})
		errs  = make([]error, calls)
	)
	ready.Add(calls)
	for k := range calls {
		wg.Go(func() {
			ready.Done()
			<-gate
			errs[k] = get(clients[k%len(clients)], k%tenants)
		})
	}
	ready.Wait() // every goroutine exists and waits at the gate
	start = time.Now()
	close(gate)
	wg.Wait()
	r.all = time.Since(start)
	for _, err := range errs {
		if err != nil {
			return r, err
		}
	}
	r.requests = s.idp.TotalTokenRequests() - before
	for i := range tenants {
		if s.idp.TokenRequests(tenantID(i)) != 1 {
			r.wrongTenants++
		}
	}
	return r, nil
}
