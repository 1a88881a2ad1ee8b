package broker

import (
	"errors"
	"time"
)

// State summarises whether a tenant can be served.
type State int

// The states of a tenant.
const (
	// StatePending: no token yet and no failure.
	StatePending State = iota + 1
	// StateReady: the cached token has at least min_valid left and the
	// last acquisition worked.
	StateReady
	// StateDegraded: the last acquisition failed; the cached token still
	// has at least min_valid left and is served.
	StateDegraded
	// StateFailed: the last acquisition failed and no token with min_valid
	// left is cached.
	StateFailed
	// StateNoCredential: the tenant's app has no stored credential.
	StateNoCredential
)

// TenantStatus describes one tenant without its token.
type TenantStatus struct {
	Name, TenantID, App string
	State               State
	// ExpiresAt of the cached token for the app's scopes; zero if none.
	ExpiresAt time.Time
	// NextRefresh is when the broker next acquires (when the acquisition
	// in progress started, if there is one); zero if none is scheduled.
	NextRefresh time.Time
	// LastError is the last failure's message; empty after a success.
	LastError string
	// Roles in the cached token.
	Roles []string
	// Counters over all of the tenant's scope sets, dropped ones included.
	CacheHits, CacheMisses, IdPRequests uint64
}

// ListTenants reports every configured tenant, sorted by name. It holds
// the broker's lock for one tenant at a time, never across I/O.
func (b *Broker) ListTenants() []TenantStatus { return b.ListTenantsFor(nil) }

// ListTenantsFor is ListTenants of the tenants c may get tokens for, all
// when c is nil: the tenants and their allow lists of one configuration.
func (b *Broker) ListTenantsFor(c *Caller) []TenantStatus {
	w := b.world()
	out := make([]TenantStatus, 0, len(w.tenants))
	now := b.clock.Now()
	for _, t := range w.tenants {
		if c != nil {
			if ok, _ := t.access.Load().Allows(*c); !ok {
				continue
			}
		}
		s := TenantStatus{Name: t.name, TenantID: t.id, App: t.app.name}
		e := t.def
		b.mu.Lock()
		s.CacheHits, s.CacheMisses, s.IdPRequests = t.droppedHits, t.droppedMisses, t.droppedIdPRequests
		for _, x := range *t.entries.Load() {
			s.CacheHits += x.hits.Load()
			s.CacheMisses += x.misses.Load()
			s.IdPRequests += x.idpRequests.Load()
		}
		switch {
		case e.flight != nil && e.flight.gen == t.app.gen:
			s.NextRefresh = e.flight.started // in progress
		case e.parked:
			s.NextRefresh = t.app.retryAt
		default:
			s.NextRefresh = e.task.due
		}
		f := e.currentFailure()
		b.mu.Unlock()
		tok := e.tok.Load()
		if tok != nil && tok.ExpiresAt.After(now) {
			s.ExpiresAt, s.Roles = tok.ExpiresAt, tok.Roles
		}
		// Servable: GetToken with the default min_valid answers at once.
		valid := tok != nil && tok.ExpiresAt.Sub(now) >= w.cfg.minValid
		switch {
		case f != nil && errors.Is(f.err, errNoCredential):
			s.State, s.LastError = StateNoCredential, f.err.Msg
		case f != nil && valid:
			s.State, s.LastError = StateDegraded, f.err.Msg
		case f != nil:
			s.State, s.LastError = StateFailed, f.err.Msg
		case valid:
			s.State = StateReady
		default:
			s.State = StatePending
		}
		out = append(out, s)
	}
	return out
}
