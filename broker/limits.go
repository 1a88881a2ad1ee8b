package broker

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits bound what local callers can make the daemon do: the size of
// what they send, how many connections they hold, how many scope sets
// they make a tenant keep fresh, how often their min_valid may send a
// tenant back to Entra ID, and how much their denials write to the audit
// log. Each is a key of the configuration's [limits] table.
type Limits struct {
	// MaxRequestBytes bounds one gRPC message a caller sends.
	MaxRequestBytes int
	// MaxTenantBytes bounds the tenant a GetToken names.
	MaxTenantBytes int
	// MaxScopes bounds the scopes one GetToken names.
	MaxScopes int
	// MaxScopeBytes bounds each scope a GetToken names.
	MaxScopeBytes int
	// MaxScopeSets bounds the scope sets, beyond its app's scopes, that
	// one tenant keeps fresh.
	MaxScopeSets int
	// MaxConnections bounds the open connections over all callers.
	MaxConnections int
	// MaxConnectionsPerUID bounds the open connections of one uid.
	MaxConnectionsPerUID int
	// IdleTimeout closes a connection with no call in progress for this
	// long.
	IdleTimeout time.Duration
	// ReacquireInterval is the least time between two acquisitions of a
	// token that callers' min_valid forces while the current token is
	// younger than it.
	ReacquireInterval time.Duration
	// AuditDenialsPerMinute bounds the denials of one uid written to the
	// audit log per minute; the rest are counted in one summary line.
	AuditDenialsPerMinute int
}

// The defaults of [limits].
const (
	DefaultMaxRequestBytes       = 16 << 10
	DefaultMaxTenantBytes        = 256
	DefaultMaxScopes             = 8
	DefaultMaxScopeBytes         = 512
	DefaultMaxScopeSets          = 8
	DefaultMaxConnections        = 1024
	DefaultMaxConnectionsPerUID  = 64
	DefaultIdleTimeout           = 5 * time.Minute
	DefaultReacquireInterval     = time.Minute
	DefaultAuditDenialsPerMinute = 10
)

// maxScopeBytes is the longest scope any configuration allows (in apps'
// scopes and allowed_scopes too); limits.max_scope_bytes may only lower it
// for callers.
const maxScopeBytes = 4 << 10

func (l *limitsTable) setDefaults() {
	setDefault(&l.MaxRequestBytes, DefaultMaxRequestBytes)
	setDefault(&l.MaxTenantBytes, DefaultMaxTenantBytes)
	setDefault(&l.MaxScopes, DefaultMaxScopes)
	setDefault(&l.MaxScopeBytes, DefaultMaxScopeBytes)
	setDefault(&l.MaxScopeSets, DefaultMaxScopeSets)
	setDefault(&l.MaxConnections, DefaultMaxConnections)
	setDefault(&l.MaxConnectionsPerUID, DefaultMaxConnectionsPerUID)
	setDefault(&l.IdleTimeout, duration(DefaultIdleTimeout))
	setDefault(&l.ReacquireInterval, duration(DefaultReacquireInterval))
	setDefault(&l.AuditDenialsPerMinute, DefaultAuditDenialsPerMinute)
}

// resolve checks the ranges of [limits], defaults filled in.
func (l *limitsTable) resolve() (Limits, error) {
	var r Limits
	ints := []struct {
		key      string
		v        int
		min, max int
		dst      *int
	}{
		{"limits.max_request_bytes", *l.MaxRequestBytes, 1 << 10, 4 << 20, &r.MaxRequestBytes},
		{"limits.max_tenant_bytes", *l.MaxTenantBytes, 64, 4 << 10, &r.MaxTenantBytes},
		{"limits.max_scopes", *l.MaxScopes, 1, 64, &r.MaxScopes},
		{"limits.max_scope_bytes", *l.MaxScopeBytes, 64, maxScopeBytes, &r.MaxScopeBytes},
		{"limits.max_scope_sets", *l.MaxScopeSets, 1, 1024, &r.MaxScopeSets},
		{"limits.max_connections", *l.MaxConnections, 1, 1 << 16, &r.MaxConnections},
		{"limits.max_connections_per_uid", *l.MaxConnectionsPerUID, 1, 1 << 16, &r.MaxConnectionsPerUID},
		{"limits.audit_denials_per_minute", *l.AuditDenialsPerMinute, 1, 1 << 16, &r.AuditDenialsPerMinute},
	}
	for _, i := range ints {
		if i.v < i.min || i.v > i.max {
			return Limits{}, badKey(i.key, "%d is out of range (%d to %d)", i.v, i.min, i.max)
		}
		*i.dst = i.v
	}
	if r.MaxConnectionsPerUID > r.MaxConnections {
		return Limits{}, badKey("limits.max_connections_per_uid", "%d is more than limits.max_connections (%d)", r.MaxConnectionsPerUID, r.MaxConnections)
	}
	var err error
	if r.IdleTimeout, err = durationIn("limits.idle_timeout", *l.IdleTimeout, 24*time.Hour); err != nil {
		return Limits{}, err
	}
	if r.ReacquireInterval, err = durationIn("limits.reacquire_interval", *l.ReacquireInterval, time.Hour); err != nil {
		return Limits{}, err
	}
	return r, nil
}

// Limits are the bounds of the broker's configuration.
func (b *Broker) Limits() Limits { return b.world().cfg.limits }

// CheckTokenRequest checks the size and form of what a GetToken caller
// sent, before the request is logged, cached or sent anywhere. Its
// messages state the limit and its key; they never repeat the value.
func (l Limits) CheckTokenRequest(req TokenRequest) *Error {
	switch n := len(req.Tenant); {
	case n == 0:
		return errorf(KindInvalidArgument, "no tenant given: name a configured tenant (by name, tenant id or domain)")
	case n > l.MaxTenantBytes:
		return errorf(KindInvalidArgument, "the tenant name of %d bytes is longer than limits.max_tenant_bytes (%d)", n, l.MaxTenantBytes)
	case !printable(req.Tenant):
		return errorf(KindInvalidArgument, "the tenant name is not printable UTF-8 text: name a configured tenant (by name, tenant id or domain)")
	}
	if n := len(req.Scopes); n > l.MaxScopes {
		return errorf(KindInvalidArgument, "%d scopes are more than limits.max_scopes (%d)", n, l.MaxScopes)
	}
	for i, s := range req.Scopes {
		switch {
		case len(s) > l.MaxScopeBytes:
			return errorf(KindInvalidArgument, "scope %d of %d bytes is longer than limits.max_scope_bytes (%d)", i+1, len(s), l.MaxScopeBytes)
		case !printable(s):
			return errorf(KindInvalidArgument, "scope %d is not printable UTF-8 text", i+1)
		}
	}
	return nil
}

// printable reports whether s is valid UTF-8 of graphic characters only:
// no control or format characters (line breaks, escapes, bidirectional
// overrides), so that it reads in a log line as what it is.
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) })
}
