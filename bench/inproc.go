//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// call is one RPC with its request built once, as a busy client would.
type call func(context.Context) error

// calls are the two RPCs every in-process comparison makes on one
// connection: a cached GetToken and the baseline, a grpc.health.v1 Check
// (gRPC itself, with nothing of the broker in it).
type calls struct{ getToken, health call }

func callsOn(conn *grpc.ClientConn) calls {
	bc, greq := brokerv1.NewBrokerServiceClient(conn), &brokerv1.GetTokenRequest{Tenant: tenantName(0)}
	hc, hreq := healthpb.NewHealthClient(conn), &healthpb.HealthCheckRequest{}
	return calls{
		getToken: func(ctx context.Context) error { _, err := bc.GetToken(ctx, greq); return err },
		health:   func(ctx context.Context) error { _, err := hc.Check(ctx, hreq); return err },
	}
}

// abba returns, for block i, which of two measurements goes first: the
// order alternates A B, B A, A B, ... so that neither always runs right
// after the other, and slow drift of the machine hits both alike.
func abba(i int) (firstIsA bool) { return i%2 == 0 }

// measureLatency times samples single calls of each kind, one at a time on
// one connection, in alternating batches of batch calls.
func measureLatency(ctx context.Context, c calls, samples, batch int) (get, health []time.Duration, err error) {
	get, health = make([]time.Duration, 0, samples), make([]time.Duration, 0, samples)
	timed := func(f call, into *[]time.Duration, n int) error {
		for range n {
			start := time.Now()
			if err := f(ctx); err != nil {
				return err
			}
			*into = append(*into, time.Since(start))
		}
		return nil
	}
	// Warm both paths (connection, server goroutines, caches) unmeasured.
	var scratch []time.Duration
	if err := timed(c.getToken, &scratch, 1000); err != nil {
		return nil, nil, fmt.Errorf("GetToken: %w", err)
	}
	if err := timed(c.health, &scratch, 1000); err != nil {
		return nil, nil, fmt.Errorf("health Check: %w", err)
	}
	for i := 0; len(get) < samples; i++ {
		n := min(batch, samples-len(get))
		first, second := func() error { return timed(c.getToken, &get, n) }, func() error { return timed(c.health, &health, n) }
		if !abba(i) {
			first, second = second, first
		}
		if err := first(); err != nil {
			return nil, nil, err
		}
		if err := second(); err != nil {
			return nil, nil, err
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
	}
	return get, health, nil
}

// percentile returns the p-th percentile (0-100) of ds, nearest rank.
func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// processCPU is the CPU time (user + system) this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// roundResult is one throughput round: calls per second, and the CPU time
// of this process (client and server) per call.
type roundResult struct {
	rate       float64
	cpuPerCall time.Duration
}

// throughputRound runs callers goroutines, caller k on connection
// k%len(conns), each calling as fast as it can for d, and returns the
// calls completed per second and the CPU time spent per call.
func throughputRound(ctx context.Context, per []call, callers int, d time.Duration) (roundResult, error) {
	var (
		stop  atomic.Bool
		total atomic.Int64
		wg    sync.WaitGroup
		once  sync.Once
		ferr  error
	)
	start, cpu := time.Now(), processCPU()
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	for k := range callers {
		f := per[k%len(per)]
		wg.Go(func() {
			n := int64(0)
			for !stop.Load() {
				if err := f(ctx); err != nil {
					once.Do(func() { ferr = err })
					stop.Store(true)
					break
				}
				n++
			}
			total.Add(n)
		})
	}
	wg.Wait()
	if ferr != nil {
		return roundResult{}, ferr
	}
	n := total.Load()
	return roundResult{
		rate:       float64(n) / time.Since(start).Seconds(),
		cpuPerCall: (processCPU() - cpu) / time.Duration(max(n, 1)),
	}, nil
}

// throughput is the result of measureThroughput for one kind of call.
type throughput struct {
	rate       float64       // calls per second over all rounds
	cpuPerCall time.Duration // mean CPU time of the process per call
}

// measureThroughput alternates rounds of GetToken and health Check at one
// level of concurrency (ABBA order) and returns, for each, the calls per
// second over all its rounds and the CPU time per call.
func measureThroughput(ctx context.Context, conns []calls, callers, rounds int, d time.Duration) (get, health throughput, err error) {
	gets, healths := make([]call, len(conns)), make([]call, len(conns))
	for i, c := range conns {
		gets[i], healths[i] = c.getToken, c.health
	}
	// Unmeasured warm-up at this concurrency.
	if _, err := throughputRound(ctx, gets, callers, d/4); err != nil {
		return get, health, fmt.Errorf("GetToken: %w", err)
	}
	if _, err := throughputRound(ctx, healths, callers, d/4); err != nil {
		return get, health, fmt.Errorf("health Check: %w", err)
	}
	type side struct {
		per []call
		sum *throughput
	}
	for i := range rounds {
		order := []side{{gets, &get}, {healths, &health}}
		if !abba(i) {
			order[0], order[1] = order[1], order[0]
		}
		for _, o := range order {
			r, err := throughputRound(ctx, o.per, callers, d)
			if err != nil {
				return get, health, err
			}
			o.sum.rate += r.rate
			o.sum.cpuPerCall += r.cpuPerCall
		}
		if ctx.Err() != nil {
			return get, health, ctx.Err()
		}
	}
	// Rounds are of equal length, so the mean of the rates is the rate
	// over all of them.
	for _, t := range []*throughput{&get, &health} {
		t.rate /= float64(rounds)
		t.cpuPerCall /= time.Duration(rounds)
	}
	return get, health, nil
}

// benchResult is allocations and bytes per call.
type benchResult struct {
	allocs, bytes float64
	nsPerOp       float64 // only for testing.Benchmark
}

// inProcessAllocs runs testing.Benchmark on one kind of call: allocations
// of client and server together, both being in this process.
func inProcessAllocs(ctx context.Context, f call) (benchResult, error) {
	var ferr error
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := f(ctx); err != nil {
				ferr = err
				b.SkipNow()
			}
		}
	})
	if ferr != nil {
		return benchResult{}, ferr
	}
	if r.N == 0 {
		return benchResult{}, fmt.Errorf("testing.Benchmark ran no iterations")
	}
	return benchResult{allocs: float64(r.MemAllocs) / float64(r.N), bytes: float64(r.MemBytes) / float64(r.N), nsPerOp: float64(r.NsPerOp())}, nil
}

// serverAllocs counts the allocations of this process (the server) while a
// separate process, loadclient, makes n calls of one kind: the server's
// allocations per call, without the client's. The process's other
// goroutines (idle IdP, refresh timers an hour away) allocate nothing
// meanwhile.
func serverAllocs(ctx context.Context, loadclient, socket, rpc string, n int) (_ benchResult, err error) {
	cmd := exec.CommandContext(ctx, loadclient, "-socket", socket, "-rpc", rpc, "-n", strconv.Itoa(n))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return benchResult{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return benchResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return benchResult{}, err
	}
	// Closing stdin lets loadclient exit; on failure it is killed.
	defer func() {
		stdin.Close()
		if err != nil {
			cmd.Process.Kill()
		}
		werr := cmd.Wait()
		if err == nil {
			err = werr
		}
		if err != nil {
			err = fmt.Errorf("%w (loadclient stderr: %q)", err, strings.TrimSpace(stderr.String()))
		}
	}()
	lines := bufio.NewScanner(stdout)
	expect := func(want string) error {
		if !lines.Scan() || lines.Text() != want {
			return fmt.Errorf("loadclient -rpc %s did not say %q", rpc, want)
		}
		return nil
	}
	if err := expect("ready"); err != nil {
		return benchResult{}, err
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := fmt.Fprintln(stdin, "go"); err != nil {
		return benchResult{}, err
	}
	if err := expect("done"); err != nil {
		return benchResult{}, err
	}
	runtime.ReadMemStats(&after)
	return benchResult{
		allocs: float64(after.Mallocs-before.Mallocs) / float64(n),
		bytes:  float64(after.TotalAlloc-before.TotalAlloc) / float64(n),
	}, nil
}
