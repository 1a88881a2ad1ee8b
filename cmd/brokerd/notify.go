package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

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
//     half: a wedged broker is not vouched for, and systemd restarts it;
//   - RELOADING=1 (with MONOTONIC_USEC=) when a reload starts and READY=1
//     when it has ended, applied or refused, once brokerd was ready: a
//     reload during the first fetches changes nothing to say.
//
// Nothing runs, and nothing is sent, when NOTIFY_SOCKET is unset: the
// notifier is then nil, and its methods do nothing.
type notifier struct {
	b        *broker.Broker
	log      *slog.Logger
	watchdog time.Duration // WATCHDOG_USEC; 0 when WatchdogSec= is unset
	// asking is the ListTenants still running from an earlier look: a
	// wedged broker holds at most one goroutine here.
	asking chan []broker.TenantStatus

	mu       sync.Mutex
	status   string // guarded by mu: the last STATUS= sent
	ready    bool   // guarded by mu: READY=1 was sent
	inReload bool   // guarded by mu: RELOADING=1 was sent, READY=1 not yet
	stopped  bool   // guarded by mu: nothing is sent any more (STOPPING=1 follows)
}

// newNotifier is the service manager's notifier, or nil when brokerd has
// none (NOTIFY_SOCKET unset).
func newNotifier(b *broker.Broker, log *slog.Logger) *notifier {
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil
	}
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("WATCHDOG_USEC is not usable; no watchdog pings", "error", err)
	}
	return &notifier{b: b, log: log, watchdog: wd}
}

// start notifies the service manager until stop is called or ctx ends;
// stop waits until it has, and nothing is sent after it.
func (n *notifier) start(ctx context.Context) (stop func()) {
	if n == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.run(ctx)
	}()
	return func() {
		cancel()
		<-done
		n.mu.Lock()
		n.stopped = true
		n.mu.Unlock()
	}
}

// reloading tells the service manager a reload starts.
func (n *notifier) reloading() {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.ready || n.stopped {
		return
	}
	var ts unix.Timespec
	msg := "RELOADING=1"
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		// systemd 253's Type=notify-reload wants to know when.
		msg += fmt.Sprintf("\nMONOTONIC_USEC=%d", ts.Nano()/1000)
	}
	n.inReload = true
	n.sendLocked(msg)
}

// reloaded tells the service manager the reload has ended.
func (n *notifier) reloaded() {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.inReload || n.stopped {
		return
	}
	n.inReload = false
	n.sendLocked(daemon.SdNotifyReady)
}

// sendLocked sends msg to the service manager. mu is held.
func (n *notifier) sendLocked(msg string) {
	if _, err := daemon.SdNotify(false, msg); err != nil {
		n.log.Warn("sd_notify failed", "error", err)
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
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return
	}
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
	n.sendLocked(strings.Join(msgs, "\n"))
}
