// Package broker is tokenbroker's core: it holds one MSAL confidential client
// per customer tenant, keeps each tenant's app-only access token fresh before
// it expires, and hands tokens out from its own cache.
//
// Security role: the broker is the only place an app's credential is used
// (a client secret, a certificate's private key, or a federated assertion
// read from a file). It reads credentials from a keystore.Store, passes
// them to MSAL, and never puts a secret, a key, an assertion or a token into
// an error, a log line or a status. Callers are authorized by the gRPC
// adapter (broker/server) before they reach it.
//
// The core knows nothing about gRPC: it returns *Error values whose Kind the
// adapter maps to status codes.
//
// # Concurrency
//
// One mutex, Broker.mu, guards every mutable field of the broker and of its
// apps, tenants and entries (each is marked "guarded by mu"). It is held
// only for short bookkeeping: never across a keystore call, a request to
// Entra ID, the building of an MSAL client, a wait or a log line. The only
// other lock is app.setting, which serialises SetCredential and
// DeleteCredential per app; it is taken before mu, never while holding it.
// That is the whole lock order.
//
// An app's credential is either read from the keystore (below) or, with
// assertion_file, made at New: its MSAL callback reads the file for each
// token request, inside the flight, like any other request I/O. A keystore
// that reports changes (keystore.Watcher) is followed by one goroutine for
// the broker's life; a change starts a read of the app's credential, or,
// with a read in flight, one more read when that one lands.
//
// A cached GetToken takes no lock: an entry's token is an atomic pointer,
// written under mu and read without it; so is a tenant's map of entries,
// which is replaced under mu and never changed; and a caller's last use
// of an entry is an atomic it writes without mu.
//
// An entry (one tenant and scope set) is acquired by at most one current
// flight: a goroutine that gets the app's credential (reading the keystore
// if need be, one read in flight per app), then one of max_idp_requests
// slots, asks Entra ID, and lands its result under mu. A flight carries the
// credential generation it started with; its result is applied only if it
// is still the entry's flight and that generation is still the app's. A
// credential change therefore starts fresh flights and never inherits an
// older flight's failure; callers who were waiting on the old flight move
// on to the new one.
//
// What is due (a first fetch, a refresh, a retry, an app's next keystore
// read) waits in one queue ordered by time. The run goroutine starts due
// acquisitions one per 1/prefetch_rate and at most prefetch_concurrency at
// a time, whether they fell due one by one or all at once after the host
// slept. An entry whose app has no secret in hand does not fly: it is
// parked until the app's keystore read answers, which wakes every parked
// entry of the app at once. A read that succeeds after failed reads, or
// finds another secret than the one in use, starts a new generation. A
// caller that finds no usable token starts (or joins) a flight at once
// instead: it is bounded by max_idp_requests and the retry rules, not
// paced behind background work, and its min_valid alone does not start
// one while the token is younger than limits.reacquire_interval.
//
// An extra scope set (any but the app's scopes) that has had no request
// for two token lifetimes is dropped by the run loop when its next
// acquisition falls due, instead of being acquired: under mu, it leaves
// the tenant's map and is marked dropped. Only an entry with no flight in
// progress is dropped, and no flight starts on a dropped entry: a caller
// that found it before the drop may serve its cached token (still a good
// token), but otherwise looks the set up again under mu, adding it anew.
// The app's scopes are never dropped.
//
// A watcher (WatchToken) is told of an entry's changes by a broadcast:
// the entry's changed channel, guarded by mu, is closed and forgotten
// under mu whenever its token or its failure is replaced, or it is
// dropped. A watcher takes the channel under mu together with the token
// and failure it reads, so no change falls between the two, and waits on
// it and sends to its caller without mu. The broker keeps no list of
// watchers and starts no goroutine for them: a watcher that goes away
// leaves at most a channel nobody will wait on.
//
// Every goroutine the broker starts is counted in Broker.wg. Close cancels
// the broker's context, which ends keystore reads, slot waits and requests
// to Entra ID, and waits for all of them: after Close returns, no goroutine
// of the broker runs and no request reaches Entra ID.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// Options are the parts of a Broker that are not in its configuration.
type Options struct {
	// Store holds the apps' credentials, keyed by client id.
	Store keystore.Store
	// HTTPClient is used for every request to Entra ID. Nil means one that
	// trusts the system roots. The broker uses a copy of it that caps every
	// reply body at 64 KiB.
	HTTPClient *http.Client
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// Clock is the broker's time; nil means the wall clock.
	Clock Clock
	// KeystoreTimeout bounds each keystore call; 0 means
	// keystore.DefaultKeyringTimeout.
	KeystoreTimeout time.Duration
	// Observer is told of requests to Entra ID and failed keystore calls;
	// nil tells nobody.
	Observer Observer
}

// Broker acquires, caches and refreshes tokens. It is safe for concurrent
// use. Create it with New, call Start to fetch every tenant, and Close to
// stop.
type Broker struct {
	store           keystore.Store
	http            *http.Client
	ownHTTP         bool // http was made by New, so Close closes its connections
	log             *slog.Logger
	clock           Clock
	keystoreTimeout time.Duration
	pace            time.Duration // 1/prefetch_rate, which Reload does not change
	obs             Observer

	// w is the configuration's apps and tenants (world): replaced whole
	// by Reload, read without mu.
	w atomic.Pointer[world]
	// reloading serialises Reload calls; it is taken before mu.
	reloading sync.Mutex

	ctx      context.Context // canceled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup // every goroutine the broker starts, and SetCredential calls
	idpSlots chan struct{}  // max_idp_requests
	watching atomic.Bool    // the keystore reports its changes (watchStore)
	kick     chan struct{}  // 1-buffered: the queue changed, the run loop looks again

	mu         sync.Mutex
	closed     bool      // guarded by mu
	started    bool      // guarded by mu: Start was called
	running    bool      // guarded by mu: the run loop was started
	queue      taskQueue // guarded by mu
	seq        uint64    // guarded by mu: orders tasks due at the same moment
	nextPace   time.Time // guarded by mu: the earliest the next scheduled acquisition may start
	background int       // guarded by mu: scheduled flights in flight
	busy       int       // guarded by mu: flights and keystore reads in flight
	// kicked is a kick the run loop has not acted on yet. It is not
	// len(b.kick): the loop takes the kick from the channel before it takes
	// mu, and only clears kicked once it holds mu and looks at the queue.
	kicked     bool      // guarded by mu
	sleeping   bool      // guarded by mu: the run loop waits until sleepUntil
	sleepUntil time.Time // guarded by mu
}

// app is one app registration and the credential the broker holds for it.
type app struct {
	conf     AppConfig // what it was made of; an app of another configuration is kept only if equal
	name     string
	clientID string
	scopes   []string
	allowed  []string      // sorted: allowed_scopes and scopes, the scopes callers may ask for
	required []string      // sorted: required_roles, the roles a token of scopes should carry
	setting  chan struct{} // 1-buffered: one SetCredential at a time

	// authorityHost ("https://host") is where its tenants sign in.
	authorityHost string

	// assertionFile, when set, is the app's credential: a federated
	// assertion read for every token request; the keystore is not used.
	assertionFile string
	sendX5C       bool // send the certificate chain with client assertions

	cred           *held     // guarded by mu: nil until read from the store
	gen            uint64    // guarded by mu: bumped whenever cred is replaced
	load           *load     // guarded by mu: the keystore read in flight
	changedAgain   bool      // guarded by mu: the keystore reported a change while load was in flight
	loadErr        *Error    // guarded by mu: why the last read failed; nil once one works
	loadFailures   int       // guarded by mu: consecutive failed reads
	retryAt        time.Time // guarded by mu: when a failed read may be tried again
	rereadUntil    time.Time // guarded by mu: keep reading the store until then (a write's answer was lost)
	rereads        int       // guarded by mu: reads since that write
	task           task      // guarded by mu: the app's next keystore read
	credWarned     bool      // guarded by mu: a failed read was logged at warn level
	lastReadWarn   string    // guarded by mu: the failed read again last logged at warn level
	expiryWarnedAt time.Time // guarded by mu: when the credential's expiry was last warned of
	storeErr       string    // guarded by mu: why the last keystore call for the credential failed; "" after a success
	removed        bool      // guarded by mu: a reload took it out of the configuration; nothing is scheduled for it
}

// tenant is one configured customer tenant.
type tenant struct {
	name string
	id   string
	app  *app
	// access is the allow list that applies: a reload that keeps the
	// tenant may replace it; read without mu.
	access atomic.Pointer[Access]
	def    *entry // the app's scopes; dropped only when the tenant is removed
	// removed: a reload took the tenant out of the configuration. Its
	// entries are dropped, and none is added again.
	removed bool // guarded by mu
	// ctx ends when the tenant is removed or the broker closes: its
	// flights' keystore and Entra ID waits end with it.
	ctx    context.Context
	cancel context.CancelFunc

	// entries are the kept scope sets by scope key, def included: the map
	// is replaced under mu, never changed, and read without it.
	entries   atomic.Pointer[map[string]*entry]
	client    *confidential.Client // guarded by mu: built for credential generation clientGen
	clientGen uint64               // guarded by mu
	// The counters of dropped scope sets, for ListTenants.
	droppedHits, droppedMisses, droppedIdPRequests uint64 // guarded by mu
}

// entry is the token for one (tenant, scope set) and its schedule.
type entry struct {
	t      *tenant
	scopes []string

	// tok is the cached token: written under mu, read without it.
	tok                       atomic.Pointer[Token]
	hits, misses, idpRequests atomic.Uint64
	// lastUse is when a caller last asked for an extra scope set (on the
	// broker's clock, in Unix nanoseconds): written without mu.
	lastUse atomic.Int64

	dropped  bool     // guarded by mu: no longer kept; callers look the set up again
	flight   *flight  // guarded by mu: the current acquisition, nil if none
	failure  *failure // guarded by mu: the last failed acquisition, nil after a success
	failures int      // guarded by mu: consecutive failures
	parked   bool     // guarded by mu: waits for its app's credential, not for a time
	task     task     // guarded by mu: the next scheduled acquisition
	// changed is closed at the entry's next change (token, failure, drop)
	// for its watchers; nil while nobody waits for one.
	changed chan struct{} // guarded by mu
}

// failure is the last failed acquisition of an entry. Callers get it until
// retryAt, unless the app's credential changed since (gen).
type failure struct {
	err     *Error
	retryAt time.Time
	gen     uint64
}

// currentFailure is e's last failure if it is about the app's current
// credential, else nil: a failure with a replaced credential is neither
// served nor shown, its successor is on the way. mu is held.
func (e *entry) currentFailure() *failure {
	if f := e.failure; f != nil && f.gen == e.t.app.gen {
		return f
	}
	return nil
}

// New builds a broker for cfg. It starts nothing and makes no network or
// keystore calls.
func New(cfg *Config, opts Options) (*Broker, error) {
	if opts.Store == nil {
		return nil, errors.New("broker: no keystore")
	}
	if cfg == nil || len(cfg.apps) == 0 || len(cfg.tenants) == 0 {
		return nil, errors.New("broker: empty configuration (build one with ParseConfig or LoadConfig)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Broker{
		store:           opts.Store,
		http:            opts.HTTPClient,
		log:             opts.Logger,
		clock:           opts.Clock,
		keystoreTimeout: opts.KeystoreTimeout,
		obs:             opts.Observer,
		pace:            time.Second / time.Duration(cfg.prefetchRate),
		ctx:             ctx,
		cancel:          cancel,
		idpSlots:        make(chan struct{}, cfg.maxIdPRequests),
		kick:            make(chan struct{}, 1),
	}
	if b.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		b.http, b.ownHTTP = &http.Client{Transport: tr}, true
	}
	b.http = withReplyCap(b.http) // a copy: the caller's client is not changed

	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.clock == nil {
		b.clock = wallClock{}
	}
	if b.obs == nil {
		b.obs = noObserver{}
	}
	if b.keystoreTimeout <= 0 {
		b.keystoreTimeout = keystore.DefaultKeyringTimeout
	}
	w, ch, err := b.nextWorld(&world{}, cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	for _, u := range ch.access {
		u.t.access.Store(u.access)
	}
	b.w.Store(w)
	return b, nil
}

// newApp makes the broker's app of ac.
func (b *Broker) newApp(ac AppConfig) *app {
	a := &app{conf: ac, name: ac.Name, clientID: ac.ClientID, scopes: ac.Scopes, required: ac.RequiredRoles, setting: make(chan struct{}, 1),
		allowed: canonicalScopes(append(slices.Clone(ac.AllowedScopes), ac.Scopes...))}
	a.authorityHost, a.assertionFile, a.sendX5C = ac.AuthorityHost, ac.AssertionFile, ac.SendX5C
	a.task = task{index: -1, app: a}
	if a.assertionFile != "" {
		a.cred = b.assertionHeld(a)
	}
	return a
}

// newTenant makes the tenant of tc, an app of a; its access is set when
// its world is published.
func (b *Broker) newTenant(tc TenantConfig, a *app) *tenant {
	t := &tenant{name: tc.Name, id: tc.ID, app: a}
	t.ctx, t.cancel = context.WithCancel(b.ctx)
	t.def = &entry{t: t, scopes: a.scopes}
	t.def.task = task{index: -1, entry: t.def}
	t.entries.Store(&map[string]*entry{scopeKey(a.scopes): t.def})
	return t
}

// Start fetches a token for every tenant in the background, in name order,
// paced by prefetch_rate. It returns at once; calling it again does
// nothing.
func (b *Broker) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return
	}
	b.started = true
	b.watchStore()
	now := b.clock.Now()
	for _, t := range b.world().tenants {
		if t.def.flight == nil && t.def.task.index < 0 {
			b.scheduleLocked(&t.def.task, now)
		}
	}
}

// Close stops the broker and waits until every goroutine it started has
// returned: nothing is acquired or refreshed after it, and no request
// reaches Entra ID. GetToken and SetCredential calls in progress fail with
// KindUnavailable. Close may be called more than once.
func (b *Broker) Close() {
	b.mu.Lock()
	b.closed = true
	for b.queue.Len() > 0 {
		b.unqueueLocked(b.queue[0])
	}
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	if b.ownHTTP {
		b.http.CloseIdleConnections()
	}
}

// enter counts a caller's call that may reach Entra ID or the keystore in
// wg, so that Close waits for it; it fails once the broker is closed.
func (b *Broker) enter() *Error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosing()
	}
	b.wg.Add(1)
	return nil
}

// goLocked runs f in a goroutine counted in wg and busy. mu is held.
func (b *Broker) goLocked(f func()) {
	b.busy++
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer func() {
			b.mu.Lock()
			b.busy--
			b.mu.Unlock()
		}()
		f()
	}()
}

func errClosing() *Error { return errorf(KindUnavailable, "brokerd is shutting down") }

// TokenRequest asks for a token.
type TokenRequest struct {
	// Tenant is a tenant's configured name, id or domain.
	Tenant string
	// Scopes default to the tenant's app's scopes; any others must be in
	// the app's allowed_scopes.
	Scopes []string
	// MinValid is the least lifetime the token must have left; 0 means
	// the configured min_valid.
	MinValid time.Duration
	// Caller, when set, must be on the tenant's allow list; the check is
	// made in the same configuration the tenant is found in, so a reload
	// between the gRPC adapter's decision and the lookup cannot hand out
	// a tenant the caller may not use. A watch checks it again after
	// every reload. Nil means a caller inside the process.
	Caller *Caller
}

// GetToken returns a token with at least MinValid left: from the cache at
// once when it has one, otherwise by waiting (within ctx) for the one
// acquisition in flight for that tenant and scope set. A caller giving up
// does not cancel the acquisition.
//
// Scopes must be in the app's allowed_scopes (PERMISSION_DENIED), and a
// scope set other than the app's scopes is kept only while the tenant has
// fewer than limits.max_scope_sets of them (RESOURCE_EXHAUSTED). MinValid
// may be at most half the lifetime of the tenant's tokens
// (INVALID_ARGUMENT), and a token younger than limits.reacquire_interval
// is not replaced for a MinValid it cannot meet (UNAVAILABLE, with the
// time to retry). None of these refusals keeps or sends anything.
func (b *Broker) GetToken(ctx context.Context, req TokenRequest) (*Token, error) {
	w := b.world()
	e, minValid, err := b.lookupEntry(w, req)
	if err != nil {
		return nil, err
	}
	if e != e.t.def {
		e.lastUse.Store(b.clock.Now().UnixNano())
	}
	var r refusal
	tok, err := b.getFrom(ctx, e, minValid, &r)
	if aerr := b.stillAllowed(w, e.t, req); aerr != nil {
		return nil, aerr // neither the token nor the error of the wait
	}
	return tok, err
}

// lookupEntry checks a request in world w as GetToken describes and
// returns the entry it is for, kept from now on, and the least lifetime
// its token must have.
func (b *Broker) lookupEntry(w *world, req TokenRequest) (*entry, time.Duration, error) {
	if err := w.cfg.limits.CheckTokenRequest(req); err != nil {
		return nil, 0, err
	}
	t, err := w.authorized(req)
	if err != nil {
		return nil, 0, err
	}
	minValid := req.MinValid
	switch {
	case minValid == 0:
		minValid = w.cfg.minValid
	case minValid < 0 || minValid > 24*time.Hour:
		return nil, 0, errorf(KindInvalidArgument, "min_valid %s is out of range (0 to 24h)", minValid)
	}
	e := t.def
	var scopes []string // an extra scope set, canonical
	if len(req.Scopes) > 0 && !slices.Equal(req.Scopes, t.app.scopes) {
		var serr *Error
		if scopes, serr = allowScopes(t, req.Scopes); serr != nil {
			return nil, 0, serr
		}
		e = t.entry(scopes) // nil until the set is kept
	}
	if req.MinValid > 0 {
		if merr := checkMinValid(t, e, minValid); merr != nil {
			return nil, 0, merr
		}
	}
	if e == nil {
		var aerr *Error
		if e, aerr = b.addEntry(t, scopes); aerr != nil {
			return nil, 0, aerr
		}
	}
	return e, minValid, nil
}

func errMinValid(e *entry, minValid, left time.Duration) *Error {
	return errorf(KindInvalidArgument, "min_valid %s is longer than a new token for tenant %s has left (%s); Entra ID issues shorter tokens",
		minValid, e.t.name, left.Round(time.Second))
}

// find is the tenant named by name (its name in any case, its id or one of
// its domains), or nil.
func (w *world) find(name string) *tenant {
	if t := w.lookup[name]; t != nil {
		return t
	}
	return w.lookup[strings.ToLower(name)]
}

// resolve finds a tenant by name, id or domain; name has passed
// CheckTokenRequest. The error of an unknown name lists configured tenants:
// the gRPC adapter lets only admins get that far with one.
func (w *world) resolve(name string) (*tenant, error) {
	if t := w.find(name); t != nil {
		return t, nil
	}
	names := make([]string, 0, min(len(w.tenants), 20))
	for _, t := range w.tenants[:min(len(w.tenants), 20)] {
		names = append(names, t.name)
	}
	more := ""
	if len(w.tenants) > 20 {
		more = fmt.Sprintf(" and %d more (brokerctl tenants)", len(w.tenants)-20)
	}
	return nil, errorf(KindNotFound, "tenant %q is not configured; configured tenants: %s%s", name, strings.Join(names, ", "), more)
}
