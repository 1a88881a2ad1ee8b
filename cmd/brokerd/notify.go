package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/tokenbroker/tokenbroker/broker"
)

// notifyTick is how often brokerd looks at its tenants for the service
// manager while the first fetches run, and at most how often it updates
// STATUS= after that.
const notifyTick = time.Second

// notifier tells the service manager (sd_notify) how brokerd is doing:
//   - while every tenant's first fetch runs, STATUS= with how many are done
//     and EXTEND_TIMEOUT_USEC=, so that thousands of tenants paced by
//     prefetch_rate do not run past TimeoutStartSec=;
//   - READY=1 once every tenant's first fetch has finished or failed;
//   - STATUS= with the tenants by state whenever that changes;
//   - WATCHDOG=1 when WatchdogSec= is set, at half the interval, each time
//     the broker answered a ListTenants (which takes its lock) within that
//     half: a wedged broker is not vouched for, and systemd restarts it.
//
// Nothing runs when NOTIFY_SOCKET is unset.
type notifier struct {
	b        *broker.Broker
	log      *slog.Logger
	watchdog time.Duration // WATCHDOG_USEC; 0 when WatchdogSec= is unset
	status   string        // the last STATUS= sent
	ready    bool
	// asking is the ListTenants still running from an earlier look: a
	// wedged broker holds at most one goroutine here.
	asking chan []broker.TenantStatus
}

// startNotifier starts notifying the service manager, if there is one,
// until stop is called or ctx ends; stop waits until it has.
func startNotifier(ctx context.Context, b *broker.Broker, log *slog.Logger) (stop func()) {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return func() {}
	}
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("WATCHDOG_USEC is not usable; no watchdog pings", "error", err)
	}
	n := &notifier{b: b, log: log, watchdog: wd}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// run notifies until ctx ends.
func (n *notifier) run(ctx context.Context) {
	tick := notifyTick
	if n.watchdog > 0 {
		tick = min(tick, n.watchdog/2)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		n.look(tick)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// look counts the tenants by state, within bound, and sends what is due.
func (n *notifier) look(bound time.Duration) {
	if n.asking == nil {
		n.asking = make(chan []broker.TenantStatus, 1)
		go func(c chan<- []broker.TenantStatus) { c <- n.b.ListTenants() }(n.asking)
	}
	var ts []broker.TenantStatus
	select {
	case ts = <-n.asking:
		n.asking = nil
	case <-time.After(bound):
		n.log.Warn("the broker did not answer in time; not vouching for it to the service manager", "waited", bound)
		return
	}
	var count [broker.StateNoCredential + 1]int
	for _, s := range ts {
		count[s.State]++
	}
	pending := count[broker.StatePending]
	var msgs []string
	status := ""
	if !n.ready && pending > 0 {
		status = fmt.Sprintf("fetching the first tokens: %d of %d tenants done", len(ts)-pending, len(ts))
		msgs = append(msgs, fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", (3*notifyTick).Microseconds()))
	} else {
		status = fmt.Sprintf("%d tenants: %d ready, %d degraded, %d failed, %d without a credential, %d pending",
			len(ts), count[broker.StateReady], count[broker.StateDegraded], count[broker.StateFailed],
			count[broker.StateNoCredential], pending)
		if !n.ready {
			n.ready = true
			msgs = append(msgs, daemon.SdNotifyReady)
		}
	}
	if status != n.status {
		n.status = status
		msgs = append(msgs, "STATUS="+status)
	}
	if n.watchdog > 0 {
		msgs = append(msgs, daemon.SdNotifyWatchdog)
	}
	if len(msgs) == 0 {
		return
	}
	if _, err := daemon.SdNotify(false, strings.Join(msgs, "\n")); err != nil {
		n.log.Warn("sd_notify failed", "error", err)
	}
}
