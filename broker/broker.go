// Package broker is tokenbroker's core: it holds one MSAL confidential client
// per customer tenant, keeps each tenant's app-only access token fresh before
// it expires, and hands tokens out from its own cache.
//
// Security role: the broker is the only place a client secret is used. It
// reads secrets from a keystore.Store, passes them to MSAL, and never puts a
// secret or a token into an error, a log line or a status. Callers are
// authorized by the gRPC adapter (broker/server) before they reach it.
//
// The core knows nothing about gRPC: it returns *Error values whose Kind the
// adapter maps to status codes.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/AzureAD/microsoft-authentication-library-for-go/apps/confidential"
	"golang.org/x/sync/singleflight"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// maxScopeSets bounds the distinct scope sets one tenant keeps fresh, so a
// caller cycling through scopes cannot grow the broker without limit.
const maxScopeSets = 16

// The token lifetimes the broker believes. Entra ID issues 60-90 minutes
// (10 minutes to 24 hours with a token lifetime policy); tests use seconds.
const (
	minLifetime = 5 * time.Second
	maxLifetime = 24 * time.Hour
)

// Options are the parts of a Broker that are not in its configuration.
type Options struct {
	// Store holds the apps' client secrets, keyed by client id.
	Store keystore.Store
	// HTTPClient is used for every request to Entra ID. Nil means one that
	// trusts the system roots.
	HTTPClient *http.Client
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
}

// Broker acquires, caches and refreshes tokens. It is safe for concurrent
// use. Create it with New, call Start to prefetch every tenant, and Close to
// stop refreshing.
type Broker struct {
	cfg     *Config
	store   keystore.Store
	http    *http.Client
	log     *slog.Logger
	apps    map[string]*app
	tenants []*tenant // sorted by name
	// defaultAccess decides for names that match no tenant.
	defaultAccess *Access
	lookup        map[string]*tenant // lower-case name, id and domains
	flights       singleflight.Group
	// idpSlots bounds the token requests in flight (max_idp_requests).
	idpSlots chan struct{}

	closed   atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
}

// app is one app registration and the credential the broker holds for it.
type app struct {
	name     string
	clientID string
	scopes   []string
	tenants  []*tenant
	setMu    sync.Mutex // serialises SetCredential for this app

	mu     sync.Mutex
	secret keystore.Secret // zero until loaded from the store
	gen    uint64          // bumped on every credential change

	noCredWarned atomic.Bool // "no credential" was logged at warn level
}

// tenant is one configured customer tenant.
type tenant struct {
	name    string
	id      string
	domains []string
	app     *app
	access  *Access

	mu        sync.Mutex
	client    *confidential.Client // built for credential generation clientGen
	clientGen uint64
	entries   map[string]*entry // by scope key; the app's scopes are always present
	def       *entry
}

// entry is the token for one (tenant, scope set) and its refresh schedule.
// The hot path reads tok without taking a lock.
type entry struct {
	t      *tenant
	scopes []string
	key    string // flight key: tenant id and scopes

	tok     atomic.Pointer[Token]
	failure atomic.Pointer[failure]

	hits, misses, idpRequests atomic.Uint64

	mu          sync.Mutex // guards timer, nextRefresh, failures
	timer       *time.Timer
	nextRefresh time.Time
	failures    int
}

// failure is the last failed acquisition of an entry, served to callers
// until retryAt unless the credential changed (gen).
type failure struct {
	err     *Error
	retryAt time.Time
	gen     uint64
}

// New builds a broker for cfg. It makes no network or keystore calls.
func New(cfg *Config, opts Options) (*Broker, error) {
	if opts.Store == nil {
		return nil, errors.New("broker: no keystore")
	}
	if cfg == nil || cfg.apps == nil {
		return nil, errors.New("broker: configuration not built by ParseConfig or LoadConfig (use one of them)")
	}
	b := &Broker{
		cfg:    cfg,
		store:  opts.Store,
		http:   opts.HTTPClient,
		log:    opts.Logger,
		apps:   map[string]*app{},
		lookup: map[string]*tenant{},
		stop:   make(chan struct{}),

		idpSlots:      make(chan struct{}, cfg.maxIdPRequests),
		defaultAccess: cfg.access,
	}
	if b.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		b.http = &http.Client{Transport: tr}
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	for _, a := range cfg.apps {
		b.apps[a.Name] = &app{name: a.Name, clientID: a.ClientID, scopes: a.Scopes}
	}
	for _, tc := range cfg.tenants {
		name := tc.Name
		a := b.apps[tc.App]
		if a == nil {
			return nil, fmt.Errorf("broker: tenant %s names unknown app %q", name, tc.App)
		}
		t := &tenant{name: name, id: tc.ID, domains: tc.Domains, app: a, access: tc.Access, entries: map[string]*entry{}}
		t.def = t.newEntry(a.scopes)
		a.tenants = append(a.tenants, t)
		b.tenants = append(b.tenants, t)
		for _, alias := range append([]string{strings.ToLower(name), tc.ID}, tc.Domains...) {
			b.lookup[alias] = t
		}
	}
	return b, nil
}

// newEntry adds the entry for a scope set. t.mu is held (or t is new).
func (t *tenant) newEntry(scopes []string) *entry {
	key := scopeKey(scopes)
	e := &entry{t: t, scopes: scopes, key: t.id + " " + key}
	t.entries[key] = e
	return e
}

// scopeKey identifies a scope set whatever the order of its scopes.
func scopeKey(scopes []string) string { return strings.Join(canonicalScopes(scopes), " ") }

// canonicalScopes is a sorted copy of scopes without duplicates.
func canonicalScopes(scopes []string) []string {
	scopes = slices.Clone(scopes)
	sort.Strings(scopes)
	return slices.Compact(scopes)
}

// Start fetches a token for every tenant in the background, at most
// prefetch_concurrency at a time. It returns at once.
func (b *Broker) Start() {
	entries := make([]*entry, len(b.tenants))
	for i, t := range b.tenants {
		entries[i] = t.def
	}
	go b.acquireAll(entries)
}

// acquireAll acquires every entry, at most prefetch_concurrency at a time
// and prefetch_rate a second, until the broker closes.
func (b *Broker) acquireAll(entries []*entry) {
	sem := make(chan struct{}, b.cfg.prefetchConcurrency)
	pace := time.NewTicker(time.Second / time.Duration(b.cfg.prefetchRate))
	defer pace.Stop()
	for i, e := range entries {
		if i > 0 {
			select {
			case <-pace.C:
			case <-b.stop:
				return
			}
		}
		select {
		case sem <- struct{}{}:
		case <-b.stop:
			return
		}
		go func() {
			defer func() { <-sem }()
			<-b.flights.DoChan(e.key, func() (any, error) { return b.acquire(e) })
		}()
	}
}

// Close stops all refreshes. Acquisitions in flight finish on their own.
func (b *Broker) Close() {
	b.closed.Store(true)
	b.stopOnce.Do(func() { close(b.stop) })
	for _, t := range b.tenants {
		t.mu.Lock()
		for _, e := range t.entries {
			e.mu.Lock()
			if e.timer != nil {
				e.timer.Stop()
			}
			e.nextRefresh = time.Time{}
			e.mu.Unlock()
		}
		t.mu.Unlock()
	}
}

// TokenRequest asks for a token.
type TokenRequest struct {
	// Tenant is a tenant's configured name, id or domain.
	Tenant string
	// Scopes default to the tenant's app's scopes.
	Scopes []string
	// MinValid is the least lifetime the token must have left; 0 means
	// the configured min_valid.
	MinValid time.Duration
}

// GetToken returns a token with at least MinValid left: from the cache at
// once when it has one, otherwise by waiting (within ctx) for the one
// acquisition in flight for that tenant and scope set. A caller giving up
// does not cancel the acquisition.
func (b *Broker) GetToken(ctx context.Context, req TokenRequest) (*Token, error) {
	t, err := b.resolve(req.Tenant)
	if err != nil {
		return nil, err
	}
	minValid := req.MinValid
	switch {
	case minValid == 0:
		minValid = b.cfg.minValid
	case minValid < 0 || minValid > 24*time.Hour:
		return nil, errorf(KindInvalidArgument, "min_valid %s is out of range (0 to 24h)", minValid)
	}
	e := t.def
	if len(req.Scopes) > 0 && !slices.Equal(req.Scopes, t.app.scopes) {
		if e, err = t.entryFor(req.Scopes); err != nil {
			return nil, err
		}
	}
	tok := e.tok.Load()
	if tok != nil && time.Until(tok.ExpiresAt) >= minValid {
		e.hits.Add(1)
		return tok, nil
	}
	e.misses.Add(1)
	if tok != nil && tok.ExpiresAt.Sub(tok.IssuedAt) < minValid {
		// Even a new token would not do: asking Entra ID again is useless.
		return nil, errMinValid(e, minValid, tok.ExpiresAt.Sub(tok.IssuedAt))
	}
	return b.waitFresh(ctx, e, minValid)
}

func errMinValid(e *entry, minValid, left time.Duration) *Error {
	return errorf(KindInvalidArgument, "min_valid %s is longer than a new token for tenant %s has left (%s); Entra ID issues shorter tokens",
		minValid, e.t.name, left.Round(time.Second))
}

// waitFresh waits for an acquisition that yields a token with minValid left.
func (b *Broker) waitFresh(ctx context.Context, e *entry, minValid time.Duration) (*Token, error) {
	if f := e.failure.Load(); f != nil && time.Now().Before(f.retryAt) && f.gen == e.t.app.generation() {
		return nil, f.withRetry()
	}
	ch := b.flights.DoChan(e.key, func() (any, error) { return b.acquire(e) })
	select {
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, errorf(KindDeadlineExceeded, "deadline exceeded waiting for a token for tenant %s from Entra ID", e.t.name)
		}
		return nil, errorf(KindCanceled, "canceled while waiting for a token for tenant %s", e.t.name)
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		tok := r.Val.(*Token)
		if left := time.Until(tok.ExpiresAt); left < minValid {
			return nil, errMinValid(e, minValid, left)
		}
		return tok, nil
	}
}

func (f *failure) withRetry() *Error {
	e := *f.err
	e.Msg = fmt.Sprintf("%s (next attempt at %s)", e.Msg, f.retryAt.Format(time.RFC3339))
	return &e
}

// resolve finds a tenant by name, id or domain.
func (b *Broker) resolve(name string) (*tenant, error) {
	if name == "" {
		return nil, errorf(KindInvalidArgument, "no tenant given: name a configured tenant (by name, tenant id or domain)")
	}
	if t := b.lookup[name]; t != nil {
		return t, nil
	}
	if t := b.lookup[strings.ToLower(name)]; t != nil {
		return t, nil
	}
	if len(name) > 256 {
		return nil, errorf(KindInvalidArgument, "tenant name of %d bytes is too long", len(name))
	}
	names := make([]string, 0, min(len(b.tenants), 20))
	for _, t := range b.tenants[:min(len(b.tenants), 20)] {
		names = append(names, t.name)
	}
	more := ""
	if len(b.tenants) > 20 {
		more = fmt.Sprintf(" and %d more (brokerctl tenants)", len(b.tenants)-20)
	}
	return nil, errorf(KindNotFound, "tenant %q is not configured; configured tenants: %s%s", name, strings.Join(names, ", "), more)
}

// entryFor returns the entry for a scope set other than the app's default,
// creating it on first use.
func (t *tenant) entryFor(scopes []string) (*entry, error) {
	for _, s := range scopes {
		if err := ValidateScope(s); err != nil {
			return nil, &Error{Kind: KindInvalidArgument, Msg: err.Error()}
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[scopeKey(scopes)]; e != nil {
		return e, nil
	}
	if len(t.entries) >= maxScopeSets {
		return nil, errorf(KindInvalidArgument, "tenant %s already has %d scope sets; the broker keeps at most %d per tenant", t.name, len(t.entries), maxScopeSets)
	}
	return t.newEntry(canonicalScopes(scopes)), nil
}

// acquire makes one token request to Entra ID for e and schedules the
// next: a refresh after success, a retry after failure. Only one acquire
// per entry runs at a time (the flight group).
func (b *Broker) acquire(e *entry) (*Token, error) {
	tok, err := b.requestToken(e)
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.failures++
		wait := retryAfter(e.failures, err.Transient, err.RetryAfter, rand.Float64())
		f := &failure{err: err, retryAt: now.Add(wait), gen: e.t.app.generation()}
		e.failure.Store(f)
		e.scheduleLocked(b, f.retryAt)
		level := slog.LevelWarn
		if errors.Is(err, errNoCredential) && !e.t.app.noCredWarned.CompareAndSwap(false, true) {
			// Said once per app; thousands of tenants need not repeat it.
			level = slog.LevelDebug
		}
		b.log.Log(context.Background(), level, "token acquisition failed", "tenant", e.t.name, "scopes", e.scopes,
			"aadsts", err.AADSTS, "transient", err.Transient, "retry_at", f.retryAt, "error", err.Msg)
		return nil, err
	}
	e.failures = 0
	e.failure.Store(nil)
	e.tok.Store(tok)
	at := refreshAt(tok.IssuedAt, tok.ExpiresAt, time.Time{}, b.cfg.refreshBefore, rand.Float64())
	e.scheduleLocked(b, at)
	b.log.Debug("token acquired", "tenant", e.t.name, "scopes", e.scopes,
		"expires_in", tok.ExpiresAt.Sub(now).Round(time.Second), "refresh_at", at)
	return tok, nil
}

// scheduleLocked arms e's timer to acquire again at `at`. e.mu is held.
func (e *entry) scheduleLocked(b *Broker, at time.Time) {
	if e.timer != nil {
		e.timer.Stop()
	}
	if b.closed.Load() {
		e.nextRefresh = time.Time{}
		return
	}
	e.nextRefresh = at
	e.timer = time.AfterFunc(time.Until(at), func() {
		b.flights.DoChan(e.key, func() (any, error) { return b.acquire(e) })
	})
}

// requestToken asks Entra ID for a token and checks the answer. It waits
// for one of the max_idp_requests slots first; idp_timeout starts once it
// has one.
func (b *Broker) requestToken(e *entry) (*Token, *Error) {
	t := e.t
	select {
	case b.idpSlots <- struct{}{}:
		defer func() { <-b.idpSlots }()
	case <-b.stop:
		return nil, errorf(KindUnavailable, "brokerd is shutting down")
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.idpTimeout)
	defer cancel()
	client, err := b.client(ctx, t)
	if err != nil {
		return nil, err
	}
	e.idpRequests.Add(1)
	issued := time.Now()
	res, rerr := client.AcquireTokenByCredential(ctx, e.scopes)
	if rerr != nil {
		return nil, classifyIdPError(rerr, b.idpContext(t))
	}
	if res.Metadata.TokenSource != confidential.TokenSourceIdentityProvider {
		// The empty cache accessor makes every call reach Entra ID; an
		// answer from MSAL's cache would mean that broke.
		return nil, errorf(KindInternal, "MSAL answered tenant %s from its own cache; refusing a token the broker did not see issued", t.name)
	}
	c, perr := parseClaims(res.AccessToken)
	if perr != nil {
		return nil, &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf("Entra ID returned an unusable token for tenant %s: %v", t.name, perr)}
	}
	if !strings.EqualFold(c.TenantID, t.id) {
		return nil, &Error{Kind: KindUnavailable, Transient: true,
			Msg: fmt.Sprintf("Entra ID returned a token for tenant %q when tenant %s (%s) was requested; refused", c.TenantID, t.name, t.id)}
	}
	if lifetime := res.ExpiresOn.Sub(issued); lifetime < minLifetime || lifetime > maxLifetime {
		return nil, &Error{Kind: KindUnavailable, Transient: true,
			Msg: fmt.Sprintf("Entra ID returned a token for tenant %s with a lifetime of %s (expires_in must be between %s and %s); refused",
				t.name, lifetime.Round(time.Second), minLifetime, maxLifetime)}
	}
	return &Token{
		AccessToken: res.AccessToken,
		TenantID:    t.id,
		Scopes:      e.scopes,
		IssuedAt:    issued,
		ExpiresAt:   res.ExpiresOn,
		Roles:       c.Roles,
		memo:        &memo{},
	}, nil
}

// client returns the tenant's MSAL client for the app's current
// credential, loading the credential and building the client when needed.
func (b *Broker) client(ctx context.Context, t *tenant) (*confidential.Client, *Error) {
	secret, gen, err := b.credential(ctx, t.app)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.client != nil && t.clientGen == gen {
		return t.client, nil
	}
	c, cerr := b.newClient(t, secret)
	if cerr != nil {
		return nil, cerr
	}
	t.client, t.clientGen = c, gen
	return c, nil
}

func (b *Broker) newClient(t *tenant, secret keystore.Secret) (*confidential.Client, *Error) {
	cred, err := confidential.NewCredFromSecret(secret.Reveal())
	if err != nil {
		return nil, errorf(KindFailedPrecondition, "the stored credential of app %s is unusable; brokerctl credential set --app %s", t.app.name, t.app.name)
	}
	opts := []confidential.Option{confidential.WithCache(noCache{}), confidential.WithHTTPClient(b.http)}
	if !isMicrosoftLogin(b.cfg.authorityHost) {
		opts = append(opts, confidential.WithInstanceDiscovery(false))
	}
	c, err := confidential.New(b.cfg.authorityHost+"/"+t.id, t.app.clientID, cred, opts...)
	if err != nil {
		return nil, errorf(KindInternal, "building the MSAL client for tenant %s: %v", t.name, err)
	}
	return &c, nil
}

// credential returns the app's secret, reading it from the store the
// first time, and its generation.
func (b *Broker) credential(ctx context.Context, a *app) (keystore.Secret, uint64, *Error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.secret.IsZero() {
		return a.secret, a.gen, nil
	}
	s, err := b.store.Get(ctx, a.clientID)
	switch {
	case errors.Is(err, keystore.ErrNotFound):
		return keystore.Secret{}, 0, &Error{Kind: KindFailedPrecondition, cause: errNoCredential, Msg: fmt.Sprintf(
			"no credential stored for app %s (client id %s) in the %s keystore; store one with: brokerctl credential set --app %s",
			a.name, a.clientID, b.store.Name(), a.name)}
	case err != nil:
		return keystore.Secret{}, 0, &Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf("reading the credential of app %s: %v", a.name, err)}
	}
	a.secret = s
	return s, a.gen, nil
}

func (a *app) generation() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen
}

func (b *Broker) idpContext(t *tenant) idpContext {
	host := b.cfg.authorityHost
	return idpContext{
		app:        t.app.name,
		clientID:   t.app.clientID,
		tenantID:   t.id,
		host:       host,
		consentURL: fmt.Sprintf("%s/%s/adminconsent?client_id=%s", host, t.id, url.QueryEscape(t.app.clientID)),
	}
}

// isMicrosoftLogin reports whether host is one of Microsoft's Entra ID
// login hosts, for which MSAL's instance discovery applies.
func isMicrosoftLogin(authorityHost string) bool {
	switch strings.TrimPrefix(authorityHost, "https://") {
	case "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
		"login.microsoftonline.us", "login.chinacloudapi.cn", "login.partner.microsoftonline.cn":
		return true
	}
	return false
}
