package broker

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Reloading the configuration.
//
// What a configuration makes of the broker, its apps and tenants and the
// names callers reach tenants by, is one world. New builds the first;
// Reload builds the next from a new configuration and publishes it with
// one atomic store, so a caller sees either world whole, never a mix.
// A world is never changed once published and is read without mu.
//
// The next world keeps what did not change:
//   - an app whose settings are all equal is the same app: its credential,
//     its keystore reads and its MSAL clients stay;
//   - a tenant with the same name, id and app, that app kept, is the same
//     tenant: its tokens, its schedule and its counters stay, and its allow
//     list is replaced in place;
//   - any other tenant is new (fetched at once, paced like a first
//     fetch), and a tenant of the old world not kept is removed: its
//     entries are dropped (no flight starts on them again, one in the air
//     lands as stale) and its watchers told.
//
// A caller is checked against the allow list in the world where its
// tenant is found, and again, as it now is, before a token is handed out
// after a wait (GetToken) and before every token a watch sends.
//
// Settings the broker or its gRPC adapter took at New (keystore,
// credentials_dir, keystore_timeout, prefetch_concurrency, prefetch_rate,
// max_idp_requests and [limits]) cannot change: a configuration that
// changes them is refused whole, and the old world keeps serving. The
// rest (refresh_before, min_valid, idp_timeout) is read from the current
// world where it is used; the top-level authority_host is part of every
// app that inherits it, so changing it replaces those apps.
//
// Every entry of a tenant kept is notified at a reload, so that a watch
// looks its request up again in the new world: with its caller's allow
// list as it now is.

// world is one configuration's apps and tenants.
type world struct {
	cfg     *Config
	gen     uint64 // 1 for New's configuration, one more at each reload
	apps    map[string]*app
	tenants []*tenant          // sorted by name
	lookup  map[string]*tenant // lower-case name, id and domains
	byApp   map[*app][]*tenant // each app's tenants, sorted by name
}

// world is the current world.
func (b *Broker) world() *world { return b.w.Load() }

// tenantsOf are a's tenants in the current world; none once a is removed.
func (b *Broker) tenantsOf(a *app) []*tenant { return b.world().byApp[a] }

// worldChange is what publishing a next world changes besides the world.
type worldChange struct {
	access  []accessUpdate // the allow list of every tenant of the next world
	added   []*tenant      // tenants new in the next world
	removed []*tenant      // tenants of the old world not in the next
	apps    []*app         // apps of the old world not in the next
	kept    int            // tenants in both
}

type accessUpdate struct {
	t      *tenant
	access *Access
}

// nextWorld builds the world of cfg from old, keeping what did not change.
// It changes nothing: the change is published by the caller.
func (b *Broker) nextWorld(old *world, cfg *Config) (*world, *worldChange, error) {
	w := &world{cfg: cfg, gen: old.gen + 1, apps: map[string]*app{}, lookup: map[string]*tenant{}, byApp: map[*app][]*tenant{}}
	ch := &worldChange{}
	for _, ac := range cfg.apps {
		if a := old.apps[ac.Name]; a != nil && reflect.DeepEqual(a.conf, ac) {
			w.apps[ac.Name] = a
		} else {
			w.apps[ac.Name] = b.newApp(ac)
		}
	}
	oldTenants := make(map[string]*tenant, len(old.tenants))
	for _, t := range old.tenants {
		oldTenants[t.name] = t
	}
	for _, tc := range cfg.tenants {
		a := w.apps[tc.App]
		if a == nil {
			return nil, nil, fmt.Errorf("broker: tenant %s names unknown app %q", tc.Name, tc.App)
		}
		t := oldTenants[tc.Name]
		if t != nil && t.app == a && t.id == tc.ID {
			delete(oldTenants, tc.Name)
			ch.kept++
		} else {
			t = b.newTenant(tc, a)
			ch.added = append(ch.added, t)
		}
		ch.access = append(ch.access, accessUpdate{t: t, access: tc.Access})
		w.tenants = append(w.tenants, t)
		w.byApp[a] = append(w.byApp[a], t)
		for _, alias := range append([]string{strings.ToLower(tc.Name), tc.ID}, tc.Domains...) {
			w.lookup[alias] = t
		}
	}
	for _, t := range old.tenants {
		if oldTenants[t.name] == t {
			ch.removed = append(ch.removed, t)
		}
	}
	for name, a := range old.apps {
		if w.apps[name] != a {
			ch.apps = append(ch.apps, a)
		}
	}
	return w, ch, nil
}

// ReloadSummary says what a reload changed.
type ReloadSummary struct {
	// Added are the tenants new to the configuration, and those whose id
	// or app (or any setting of their app) changed: they are fetched
	// afresh. Removed are those no longer configured, and those replaced.
	Added, Removed []string
	// Unchanged is how many tenants were kept with their tokens (their
	// allow lists and domains may have changed).
	Unchanged int
	// Generation counts the configurations: 1 for New's, one more at
	// each reload.
	Generation uint64
}

// Reload replaces the broker's configuration with cfg, keeping the apps
// and tenants that did not change and their tokens (see the comment at the
// top of reload.go). A cfg that changes a setting only a restart can
// change is refused with a KindFailedPrecondition error naming it, and
// nothing changes. Tenants added are fetched at once if Start was called.
func (b *Broker) Reload(cfg *Config) (ReloadSummary, error) {
	if cfg == nil || len(cfg.apps) == 0 || len(cfg.tenants) == 0 {
		return ReloadSummary{}, errorf(KindInvalidArgument, "empty configuration")
	}
	b.reloading.Lock()
	defer b.reloading.Unlock()
	old := b.world()
	if keys := fixedChanges(old.cfg, cfg); len(keys) > 0 {
		them := "them"
		if len(keys) == 1 {
			them = "it"
		}
		return ReloadSummary{}, errorf(KindFailedPrecondition, "%s cannot change while brokerd runs; restart brokerd to apply %s (the running configuration is unchanged)",
			strings.Join(keys, ", "), them)
	}
	w, ch, err := b.nextWorld(old, cfg)
	if err != nil {
		return ReloadSummary{}, errorf(KindInvalidArgument, "%v", err)
	}

	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ReloadSummary{}, errClosing()
	}
	for _, u := range ch.access {
		u.t.access.Store(u.access)
	}
	for _, t := range ch.removed {
		t.access.Store(&Access{Source: "a tenant removed by a reload"}) // admins only
	}
	b.w.Store(w)
	for _, t := range ch.removed {
		t.removed = true
		t.cancel() // ends its flights' keystore and Entra ID waits
		for _, e := range *t.entries.Load() {
			b.unqueueLocked(&e.task)
			e.dropped, e.parked = true, false
			e.notifyLocked()
		}
	}
	for _, a := range ch.apps {
		a.removed = true
		b.unqueueLocked(&a.task)
	}
	for _, t := range w.tenants {
		for _, e := range *t.entries.Load() {
			e.notifyLocked() // its watchers look their request up again
		}
	}
	if b.started {
		now := b.clock.Now()
		for _, t := range ch.added {
			b.scheduleLocked(&t.def.task, now)
		}
	}
	b.mu.Unlock()

	s := ReloadSummary{Unchanged: ch.kept, Generation: w.gen}
	for _, t := range ch.added {
		s.Added = append(s.Added, t.name)
	}
	for _, t := range ch.removed { // in name order, as the old world's tenants
		s.Removed = append(s.Removed, t.name)
	}
	b.log.Info("configuration reloaded", "generation", s.Generation, "tenants", len(w.tenants), "added", len(s.Added),
		"removed", len(s.Removed), "unchanged", s.Unchanged, "added_tenants", firstNames(s.Added), "removed_tenants", firstNames(s.Removed))
	return s, nil
}

// firstNames is at most 20 names, for a log line.
func firstNames(names []string) string {
	if len(names) <= 20 {
		return strings.Join(names, ",")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:20], ","), len(names)-20)
}

// fixedChanges names the settings that differ between a and b among those
// a reload cannot change.
func fixedChanges(a, b *Config) []string {
	var keys []string
	add := func(key string, changed bool) {
		if changed {
			keys = append(keys, key)
		}
	}
	add("keystore", a.keystore != b.keystore)
	add("credentials_dir", a.credentialsDir != b.credentialsDir)
	add("keystore_timeout", a.keystoreTimeout != b.keystoreTimeout)
	add("prefetch_concurrency", a.prefetchConcurrency != b.prefetchConcurrency)
	add("prefetch_rate", a.prefetchRate != b.prefetchRate)
	add("max_idp_requests", a.maxIdPRequests != b.maxIdPRequests)
	la, lb := reflect.ValueOf(a.limits), reflect.ValueOf(b.limits)
	for i := range la.NumField() {
		if la.Field(i).Interface() != lb.Field(i).Interface() {
			keys = append(keys, "limits."+limitKey(la.Type().Field(i).Name))
		}
	}
	return keys
}

// limitKey is the key in [limits] of the Limits field named field.
func limitKey(field string) string {
	f, _ := reflect.TypeFor[limitsTable]().FieldByName(field)
	return f.Tag.Get("toml")
}

// Generation counts the configurations the broker has served: 1 for New's,
// one more at each reload.
func (b *Broker) Generation() uint64 { return b.world().gen }

// authorized finds req's tenant in w and, when req names its caller,
// checks the caller against the tenant's allow list. A caller who is not
// an admin is denied an unknown tenant with the very message of a tenant
// it may not use, as the gRPC adapter denies it.
func (w *world) authorized(req TokenRequest) (*tenant, error) {
	t, err := w.resolve(req.Tenant)
	c := req.Caller
	switch {
	case c == nil:
		return t, err
	case err != nil && IsAdmin(*c):
		return nil, err
	case err == nil:
		if ok, _ := t.access.Load().Allows(*c); ok {
			return t, nil
		}
	}
	return nil, errNotAllowed(c, req.Tenant)
}

// errNotAllowedCause is behind a caller's denial by a tenant's allow list
// inside the broker: the configuration changed since the gRPC adapter
// allowed the call.
var errNotAllowedCause = errors.New("not on the tenant's allow list")

// errNotAllowed is the denial of c for the tenant it named, in the words
// of the gRPC adapter's.
func errNotAllowed(c *Caller, name string) *Error {
	return &Error{Kind: KindPermissionDenied, cause: errNotAllowedCause, Msg: fmt.Sprintf("uid %d may not get tokens for tenant %q", c.UID, name)}
}

// IsNotAllowed reports whether err is a caller's denial by an allow list
// as a reload changed it (TokenRequest.Caller), for the audit log.
func IsNotAllowed(err error) bool { return errors.Is(err, errNotAllowedCause) }

// stillAllowed checks req's caller against the allow list of t, found in
// world w, as it is now, before a token of t is handed out: a reload may
// have narrowed it while the call waited. An allow list changes only with
// the world (Reload replaces both under mu, the lists first), so while w
// is current nothing is checked again: on the GetToken path this is one
// atomic load.
func (b *Broker) stillAllowed(w *world, t *tenant, req TokenRequest) *Error {
	c := req.Caller
	if c == nil || b.world() == w {
		return nil
	}
	if ok, _ := t.access.Load().Allows(*c); !ok {
		return errNotAllowed(c, req.Tenant)
	}
	return nil
}
