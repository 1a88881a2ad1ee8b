package main

import (
	"context"
	"log/slog"
	"sync"

	"github.com/tokenbroker/tokenbroker/broker"
)

// reloader reloads brokerd's configuration file, for SIGHUP and for
// brokerctl reload alike, one reload at a time. The file is checked as at
// start (who may change it, then its contents); a file brokerd cannot use
// is refused, and the configuration in use keeps serving.
type reloader struct {
	path   string
	b      *broker.Broker
	log    *slog.Logger
	notify *notifier
	mx     *metricsEndpoint

	mu sync.Mutex
}

// reload reads the configuration file again and applies it. It returns
// the file read and what changed; every error is logged.
func (r *reloader) reload(context.Context) (string, broker.ReloadSummary, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notify.reloading()
	defer r.notify.reloaded()
	cfg, err := loadConfig(r.path)
	var s broker.ReloadSummary
	if err == nil {
		s, err = r.b.Reload(cfg)
	}
	r.mx.reloaded(err == nil)
	if err != nil {
		r.log.Error("reload refused; the configuration in use keeps serving", "config", r.path, "error", err)
		return r.path, broker.ReloadSummary{}, err
	}
	return r.path, s, nil
}
