package broker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// reload reloads h's broker with the World's configuration as it now is.
func (h *harness) reload(top ...string) (broker.ReloadSummary, error) {
	h.t.Helper()
	cfg, err := broker.ParseConfig("world.toml", []byte(h.w.Config(top...)))
	if err != nil {
		h.t.Fatal(err)
	}
	return h.b.Reload(cfg)
}

func (h *harness) mustReload(top ...string) broker.ReloadSummary {
	h.t.Helper()
	s, err := h.reload(top...)
	if err != nil {
		h.t.Fatalf("reload: %v", err)
	}
	return s
}

func tenantNames(b *broker.Broker) []string {
	var names []string
	for _, s := range b.ListTenants() {
		names = append(names, s.Name)
	}
	return names
}

func removeTenant(w *brokertest.World, name string) {
	w.Tenants = slices.DeleteFunc(w.Tenants, func(t brokertest.Tenant) bool { return t.Name == name })
}

func wantKind(t *testing.T, what string, err error, kind broker.Kind, msg string) {
	t.Helper()
	var be *broker.Error
	if !errors.As(err, &be) || be.Kind != kind || !strings.Contains(be.Msg, msg) {
		t.Fatalf("%s: %v, want a %v error containing %q", what, err, kind, msg)
	}
}

// A reload adds, removes and keeps tenants: a kept tenant keeps the very
// token it had and asks Entra ID for nothing more, an added one is
// fetched at once, and a removed one is refused and never asked for
// again. An allow list changed by the reload applies to the next call.
func TestReload(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 3)
	h.w.Tenants[2].Extra = []string{"allow_uids = [4242, 4343]"}
	h.b = h.w.NewBroker(t, broker.Options{Store: h.store, Clock: h.clk, Logger: brokertest.DebugLogger(h.logs)})
	h.b.Start()
	h.advance(time.Second) // every first fetch, paced
	before := map[string]*broker.Token{}
	for _, name := range []string{"tenant0", "tenant1", "tenant2"} {
		tok, err := h.get(name, 0)
		if err != nil {
			t.Fatal(err)
		}
		before[name] = tok
	}
	other := broker.Caller{UID: 4343, GID: 4343}
	if _, err := h.b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant2", Caller: &other}); err != nil {
		t.Fatalf("uid 4343 before the reload: %v", err)
	}

	removeTenant(h.w, "tenant1")
	h.w.AddTenant("tenant3", brokertest.TenantID(3), h.w.App, true)
	h.w.Tenants[1].Extra = []string{"allow_uids = [4242]"} // tenant2: 4343 no longer
	s := h.mustReload()
	if !slices.Equal(s.Added, []string{"tenant3"}) || !slices.Equal(s.Removed, []string{"tenant1"}) || s.Unchanged != 2 || s.Generation != 2 {
		t.Fatalf("summary %+v", s)
	}
	if g := h.b.Generation(); g != 2 {
		t.Errorf("generation %d, want 2", g)
	}
	h.advance(time.Second)
	if got := tenantNames(h.b); !slices.Equal(got, []string{"tenant0", "tenant2", "tenant3"}) {
		t.Errorf("tenants after the reload: %v", got)
	}
	for _, name := range []string{"tenant0", "tenant2"} {
		tok, err := h.get(name, 0)
		if err != nil || tok != before[name] {
			t.Errorf("%s after the reload: %v, %v; want the very token it had", name, tok, err)
		}
	}
	if tok, err := h.get("tenant3", 0); err != nil || tok.TenantID != brokertest.TenantID(3) {
		t.Errorf("tenant3: %v, %v", tok, err)
	}
	_, err := h.get("tenant1", 0)
	wantKind(t, "removed tenant1", err, broker.KindNotFound, `tenant "tenant1" is not configured`)

	_, err = h.b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant2", Caller: &other})
	wantKind(t, "uid 4343 after the reload", err, broker.KindPermissionDenied, `uid 4343 may not get tokens for tenant "tenant2"`)
	if _, ok, _ := h.b.Authorize(other, "tenant2"); ok {
		t.Error("Authorize still allows uid 4343")
	}
	allowed := broker.Caller{UID: 4242, GID: 4242}
	if tok, err := h.b.GetToken(context.Background(), broker.TokenRequest{Tenant: "TENANT2.onmicrosoft.com", Caller: &allowed}); err != nil || tok != before["tenant2"] {
		t.Errorf("uid 4242 after the reload: %v, %v", tok, err)
	}
	// A caller who is not an admin learns nothing of a tenant that is not
	// there: the message of a tenant it may not use.
	_, err = h.b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant1", Caller: &allowed})
	wantKind(t, "uid 4242 asking for the removed tenant", err, broker.KindPermissionDenied, `uid 4242 may not get tokens for tenant "tenant1"`)

	// Hours on, the kept tenants were refreshed and the removed one
	// never asked for again.
	h.advance(3 * time.Hour)
	if h.requests(1) != 1 {
		t.Errorf("removed tenant1: %d token requests, want the 1 before the reload", h.requests(1))
	}
	if h.requests(0) < 3 || h.requests(3) < 3 {
		t.Errorf("token requests after 3 hours: tenant0 %d, tenant3 %d; want refreshes", h.requests(0), h.requests(3))
	}
}

// A tenant whose id changes, and every tenant of an app whose settings
// change, is replaced: fetched afresh, while the others keep their tokens.
func TestReloadReplaces(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 2)
	w.AddApp("second", "0a0a0a0a-0000-4000-8000-00000000a002", "second-secret-Q~abcdefghijklmnopqrstuvwxyz0123")
	w.AddTenant("fabrikam", brokertest.TenantID(10), "second", true)
	h := newHarness(t, w, 0)
	h.b.Start()
	h.advance(time.Second) // every first fetch, paced
	kept, err := h.get("fabrikam", 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Tenants[1].ID = brokertest.TenantID(11) // tenant1 is now another tenant
	h.w.IdP.AddTenant(entratest.Tenant{ID: brokertest.TenantID(11), ConsentedApps: []string{w.ClientID}})
	w.Apps[0].Extra = []string{`allowed_scopes = ["https://graph.microsoft.com/.default"]`}
	s := h.mustReload()
	if !slices.Equal(s.Added, []string{"tenant0", "tenant1"}) || !slices.Equal(s.Removed, []string{"tenant0", "tenant1"}) || s.Unchanged != 1 {
		t.Fatalf("summary %+v", s)
	}
	h.advance(time.Second)
	if tok, err := h.get("fabrikam", 0); err != nil || tok != kept {
		t.Errorf("fabrikam, of the unchanged app: %v, %v; want the token it had", tok, err)
	}
	if tok, err := h.get("tenant1", 0); err != nil || tok.TenantID != brokertest.TenantID(11) {
		t.Errorf("tenant1: %v, %v; want a token of its new id", tok, err)
	}
	if h.requests(0) != 2 || h.requests(11) != 1 || h.requests(1) != 1 {
		t.Errorf("token requests: tenant0 %d (want 2), new tenant1 %d (want 1), old tenant1 %d (want 1)", h.requests(0), h.requests(11), h.requests(1))
	}
	if _, err := h.b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant0", Scopes: []string{"https://graph.microsoft.com/.default"}}); err != nil {
		t.Errorf("a scope the reload allowed: %v", err)
	}
}

// A configuration that changes what only a restart can change is refused
// whole, naming the keys, and the old one keeps serving.
func TestReloadRefused(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 1)
	h.b.Start()
	h.advance(time.Second) // every first fetch, paced
	tok, err := h.get("tenant0", 0)
	if err != nil {
		t.Fatal(err)
	}
	h.w.AddTenant("tenant1", brokertest.TenantID(1), h.w.App, true)
	_, err = h.reload("prefetch_rate = 5", "[limits]", "max_scopes = 3")
	wantKind(t, "reload", err, broker.KindFailedPrecondition, "prefetch_rate, limits.max_scopes cannot change while brokerd runs; restart brokerd to apply them")
	_, err = h.reload(`keystore_timeout = "9s"`)
	wantKind(t, "reload", err, broker.KindFailedPrecondition, "keystore_timeout cannot change while brokerd runs; restart brokerd to apply it")
	if _, err := h.b.Reload(nil); err == nil {
		t.Error("Reload(nil) succeeded")
	}
	h.settle()
	if g := h.b.Generation(); g != 1 {
		t.Errorf("generation %d after refused reloads, want 1", g)
	}
	if got := tenantNames(h.b); !slices.Equal(got, []string{"tenant0"}) {
		t.Errorf("tenants after refused reloads: %v", got)
	}
	if got, err := h.get("tenant0", 0); err != nil || got != tok {
		t.Errorf("tenant0: %v, %v", got, err)
	}
	// What a reload may change, it changes: min_valid here.
	s := h.mustReload(`min_valid = "50m"`)
	if !slices.Equal(s.Added, []string{"tenant1"}) {
		t.Errorf("summary %+v", s)
	}
	h.advance(15 * time.Minute) // the token has 45 minutes left, less than the new min_valid
	if got, err := h.get("tenant0", 0); err != nil || got == tok {
		t.Errorf("tenant0 with min_valid 50m: %v, %v; want a new token", got, err)
	}
}

// A tenant removed while its token is being acquired: the caller waiting
// for it is told, the acquisition's result is dropped when it lands, and
// nothing more is scheduled for the tenant.
func TestReloadRemovesTenantInFlight(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 2)
	h.w.IdP.SetFault(brokertest.TenantID(1), &entratest.Fault{Delay: 500 * time.Millisecond, Times: 1})
	h.b.Start()
	errc := make(chan error, 1)
	go func() {
		_, err := h.get("tenant1", 0)
		errc <- err
	}()
	brokertest.WaitFor(t, "tenant1's first fetch to reach Entra ID and a caller to wait for it", func() bool {
		h.clk.Advance(20 * time.Millisecond) // pacing
		return h.requests(1) == 1 && h.status("tenant1").CacheMisses == 1
	})
	removeTenant(h.w, "tenant1")
	h.mustReload()
	wantKind(t, "the caller waiting for tenant1", <-errc, broker.KindUnavailable, "tenant tenant1 was removed or replaced by a reload")
	h.advance(5 * time.Hour)
	if got := h.requests(1); got != 1 {
		t.Errorf("tenant1: %d token requests, want only the one in flight at the reload", got)
	}
	if h.requests(0) < 5 {
		t.Errorf("tenant0: %d token requests in 5 hours, want refreshes", h.requests(0))
	}
	if !strings.Contains(h.logs.String(), "result of an acquisition for a tenant no longer configured dropped") {
		t.Error("the dropped result was not logged")
	}
}

// A watch looks its request up again after a reload: it follows a tenant
// replaced with the same id (its app changed), ends with UNAVAILABLE when
// its name now names another directory, with PERMISSION_DENIED once its
// caller is no longer allowed, and with the refusal once its tenant is
// removed.
func TestReloadWatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 4)
	for i := range h.w.Tenants {
		h.w.Tenants[i].Extra = []string{"allow_uids = [4242]"}
	}
	h.w.Apps[0].Extra = []string{`allowed_scopes = ["` + graphScope + `"]`}
	h.b = h.w.NewBroker(t, broker.Options{Store: h.store, Clock: h.clk, Logger: brokertest.DebugLogger(h.logs)})
	h.b.Start()
	h.advance(time.Second) // every first fetch, paced
	caller := broker.Caller{UID: 4242, GID: 4242}
	type event struct {
		tok *broker.Token
		err *broker.Error
	}
	watch := func(tenant string, scopes ...string) (<-chan event, <-chan error) {
		events, end := make(chan event, 16), make(chan error, 1)
		go func() {
			end <- h.b.WatchToken(context.Background(), broker.TokenRequest{Tenant: tenant, Scopes: scopes, Caller: &caller}, func(tok *broker.Token, err *broker.Error) error {
				events <- event{tok, err}
				return nil
			})
		}()
		if ev := recv(t, events, tenant+"'s first event"); ev.tok == nil {
			t.Fatalf("%s: first event %v", tenant, ev.err)
		}
		return events, end
	}
	ev0, end0 := watch("tenant0")
	_, end1 := watch("tenant1")
	ev2, end2 := watch("tenant2")
	evGraph, endGraph := watch("tenant2", graphScope)
	_, end3 := watch("tenant3.onmicrosoft.com")

	h.w.Tenants[0].Extra = nil // tenant0: top-level list, uid 4242 no longer
	removeTenant(h.w, "tenant1")
	// Every tenant's app changes: tenant2 is replaced, with the same id.
	h.w.Apps[0].Extra = append(h.w.Apps[0].Extra, `required_roles = ["Machine.Read.All"]`)
	h.w.Tenants[2].ID = brokertest.TenantID(13) // tenant3 (and its domain): another directory
	h.w.IdP.AddTenant(entratest.Tenant{ID: brokertest.TenantID(13), ConsentedApps: []string{h.w.ClientID}})
	h.mustReload()
	h.advance(time.Second)

	wantKind(t, "tenant0's watch", recv(t, end0, "tenant0's watch to end"), broker.KindPermissionDenied, `uid 4242 may not get tokens for tenant "tenant0"`)
	wantKind(t, "tenant1's watch", recv(t, end1, "tenant1's watch to end"), broker.KindPermissionDenied, `uid 4242 may not get tokens for tenant "tenant1"`)
	select {
	case ev := <-ev0:
		t.Errorf("tenant0's watch sent %v after the reload", ev)
	default:
	}
	wantKind(t, "tenant3's watch", recv(t, end3, "tenant3's watch to end"), broker.KindUnavailable,
		`"tenant3.onmicrosoft.com" names another tenant (id `+brokertest.TenantID(13)+", was "+brokertest.TenantID(3)+")")
	if ev := recv(t, ev2, "tenant2's next token"); ev.tok == nil || ev.tok.TenantID != brokertest.TenantID(2) {
		t.Errorf("tenant2's watch after the reload: %+v; want a new token of the same tenant", ev)
	}
	// The extra scope set of the replaced tenant is acquired for its
	// watch, though no schedule of the new tenant names it.
	if ev := recv(t, evGraph, "tenant2's next graph token"); ev.tok == nil || ev.tok.TenantID != brokertest.TenantID(2) || !slices.Equal(ev.tok.Scopes, []string{graphScope}) {
		t.Errorf("tenant2's graph watch after the reload: %+v; want a new graph token", ev)
	}
	for what, end := range map[string]<-chan error{"tenant2's watch": end2, "tenant2's graph watch": endGraph} {
		select {
		case err := <-end:
			t.Errorf("%s ended: %v", what, err)
		default:
		}
	}
}

const graphScope = "https://graph.microsoft.com/.default"

// recv is the next value from c, failing the test after 10 seconds.
func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s in 10 seconds", what)
		panic("unreachable")
	}
}

// A caller waiting for a token when a reload takes it off the tenant's
// allow list gets the denial, neither the token nor the error of the
// acquisition it waited for: a GetToken, and a watch's first event.
func TestReloadNarrowsWaitingCaller(t *testing.T) {
	t.Parallel()
	for name, fault := range map[string]entratest.Fault{
		"token": {Delay: 500 * time.Millisecond, Times: 1},
		"error": {Delay: 500 * time.Millisecond, Times: 1, Status: 500},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil, 1)
			h.w.Tenants[0].Extra = []string{"allow_uids = [4242]"}
			h.b = h.w.NewBroker(t, broker.Options{Store: h.store, Clock: h.clk, Logger: brokertest.DebugLogger(h.logs)})
			h.w.IdP.SetFault(brokertest.TenantID(0), &fault)
			caller := broker.Caller{UID: 4242, GID: 4242}
			getc, watchc := make(chan error, 1), make(chan error, 1)
			go func() {
				_, err := h.b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant0", Caller: &caller})
				getc <- err
			}()
			go func() {
				watchc <- h.b.WatchToken(context.Background(), broker.TokenRequest{Tenant: "tenant0", Caller: &caller}, func(tok *broker.Token, err *broker.Error) error {
					return fmt.Errorf("sent %v, %v", tok, err)
				})
			}()
			brokertest.WaitFor(t, "both callers to wait for tenant0's first token", func() bool {
				return h.requests(0) == 1 && h.status("tenant0").CacheMisses == 2
			})
			h.w.Tenants[0].Extra = nil
			h.mustReload()
			for what, c := range map[string]<-chan error{"GetToken": getc, "WatchToken": watchc} {
				err := recv(t, c, what+"'s answer")
				wantKind(t, what, err, broker.KindPermissionDenied, `uid 4242 may not get tokens for tenant "tenant0"`)
				if !broker.IsNotAllowed(err) {
					t.Errorf("%s: %v is not marked as an allow-list denial", what, err)
				}
			}
		})
	}
}

// newHeldWrites is a started broker of one tenant, fetched, whose keystore
// holds every write until release is called.
func newHeldWrites(t *testing.T) (*harness, func()) {
	h := newHarnessWith(t, nil, 1, broker.Options{KeystoreTimeout: 10 * time.Second})
	h.b.Start()
	h.advance(time.Second)
	return h, h.store.HoldSets()
}

// A credential change that waited for its turn while a reload replaced
// its app is refused: the app's tenants, which would verify it, are gone,
// and nothing is stored.
func TestReloadDuringCredentialChangeWait(t *testing.T) {
	t.Parallel()
	h, release := newHeldWrites(t)
	defer release()
	first, second := make(chan error, 1), make(chan error, 1)
	go func() {
		_, _, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: h.w.App, Kind: keystore.KindSecret,
			Value: keystore.NewSecret(h.w.Secret), NoVerify: true})
		first <- err
	}()
	brokertest.WaitFor(t, "the first change to write", func() bool { return h.store.Sets() == 2 })
	go func() {
		_, _, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: h.w.App, Kind: keystore.KindSecret,
			Value: keystore.NewSecret("wrong-secret-Q~abcdefghijklmnopqrstuvwxyz0123")})
		second <- err
	}()
	brokertest.WaitFor(t, "the second change to wait for its turn", func() bool {
		for _, g := range brokertest.Goroutines("github.com/tokenbroker/tokenbroker/broker_test") {
			if strings.Contains(g, "broker.(*Broker).beginChange") && strings.Contains(g, "TestReloadDuringCredentialChangeWait") {
				return true
			}
		}
		return false
	})
	h.w.Apps[0].Extra = []string{`allowed_scopes = ["` + graphScope + `"]`}
	h.mustReload()
	release()
	if err := recv(t, first, "the first change's answer"); err != nil {
		t.Errorf("the first change: %v", err)
	}
	wantKind(t, "the second change", recv(t, second, "the second change's answer"), broker.KindUnavailable, "was changed or removed by a reload")
	if got := h.store.Sets(); got != 2 {
		t.Errorf("%d keystore writes, want the first change's only", got-1)
	}
	if got := brokertest.StoredSecret(h.store, h.w.ClientID); got != h.w.Secret {
		t.Error("the keystore holds another secret than the first change's")
	}
}

// A credential set while a reload replaces its app reaches the app that
// replaced it: that app reads the keystore again when the write lands,
// instead of going on with what it read before.
func TestReloadDuringSetCredential(t *testing.T) {
	t.Parallel()
	h, release := newHeldWrites(t)
	defer release()
	const rotated = "rotated-secret-Q~abcdefghijklmnopqrstuvwxyz0123"
	setc := make(chan error, 1)
	go func() {
		_, _, err := h.b.SetCredential(context.Background(), broker.SetRequest{App: h.w.App, Kind: keystore.KindSecret,
			Value: keystore.NewSecret(rotated), NoVerify: true})
		setc <- err
	}()
	brokertest.WaitFor(t, "the keystore write to start", func() bool { return h.store.Sets() == 2 })
	h.w.Apps[0].Extra = []string{`allowed_scopes = ["https://graph.microsoft.com/.default"]`}
	if s := h.mustReload(); !slices.Equal(s.Added, []string{"tenant0"}) {
		t.Fatalf("summary %+v: want the app, and so tenant0, replaced", s)
	}
	h.advance(time.Second) // the new app reads the old secret: the write has not landed
	if h.requests(0) != 2 {
		t.Fatalf("tenant0: %d token requests, want 2", h.requests(0))
	}
	h.w.IdP.AddApp(h.w.ClientID, rotated) // the old secret no longer works
	release()
	if err := <-setc; err != nil {
		t.Fatalf("SetCredential: %v", err)
	}
	h.advance(time.Second)
	if h.requests(0) != 3 {
		t.Errorf("tenant0: %d token requests, want 3: one with the rotated secret", h.requests(0))
	}
	wantState(t, h.status("tenant0"), broker.StateReady)
	if tok, err := h.get("tenant0", 0); err != nil {
		t.Errorf("tenant0 after the rotation: %v, %v", tok, err)
	}
}

// heldDeletes is a Store whose Delete calls wait until release is closed.
type heldDeletes struct {
	*brokertest.Store
	started atomic.Int32
	release chan struct{}
}

func (s *heldDeletes) Delete(ctx context.Context, account string) error {
	s.started.Add(1)
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Store.Delete(ctx, account)
}

// A credential deleted while a reload replaces its app is forgotten by
// the app that replaced it too, though that app read it before the delete
// landed: no token is asked for with it again.
func TestReloadDuringDeleteCredential(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	store := &heldDeletes{Store: w.Store(t), release: make(chan struct{})}
	h := newHarnessWith(t, w, 0, broker.Options{Store: store, KeystoreTimeout: 10 * time.Second})
	h.b.Start()
	h.advance(time.Second)
	deleted := make(chan error, 1)
	go func() {
		_, err := h.b.DeleteCredential(context.Background(), w.App)
		deleted <- err
	}()
	brokertest.WaitFor(t, "the delete to reach the keystore", func() bool { return store.started.Load() == 1 })
	w.Apps[0].Extra = []string{`allowed_scopes = ["` + graphScope + `"]`}
	h.mustReload()
	h.advance(time.Second) // the new app reads the credential the delete has not removed yet
	if h.requests(0) != 2 {
		t.Fatalf("tenant0: %d token requests, want 2", h.requests(0))
	}
	close(store.release)
	if err := recv(t, deleted, "the delete's answer"); err != nil {
		t.Fatalf("DeleteCredential: %v", err)
	}
	h.advance(3 * time.Hour)
	if got := h.requests(0); got != 2 {
		t.Errorf("tenant0: %d token requests after the delete, want none", got-2)
	}
	wantState(t, h.status("tenant0"), broker.StateNoCredential, "no credential stored for app partner")
}

// A flight in the air when the credential is deleted lands as stale, and
// its entry then waits for a credential like the others, instead of
// being left with nothing scheduled.
func TestDeleteCredentialDuringFlight(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil, 1)
	h.b.Start()
	h.advance(time.Second)
	h.w.IdP.SetFault(brokertest.TenantID(0), &entratest.Fault{Delay: 500 * time.Millisecond, Times: 1})
	h.clk.Set(h.status("tenant0").NextRefresh)
	h.nudge("the refresh to reach Entra ID", func() bool { return h.requests(0) == 2 })
	if _, err := h.b.DeleteCredential(context.Background(), h.w.App); err != nil {
		t.Fatal(err)
	}
	h.advance(2 * time.Hour)
	wantState(t, h.status("tenant0"), broker.StateNoCredential, "no credential stored for app partner")
	if got := h.requests(0); got != 2 {
		t.Errorf("tenant0: %d token requests after the delete, want none", got-2)
	}
}
