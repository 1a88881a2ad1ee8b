package brokertest

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// A World is a fake Entra ID with registered apps and their tenants, and
// the brokerd configuration that points at it.
type World struct {
	// IdP is the fake Entra ID; it is closed when the test ends.
	IdP *entratest.Server
	// App is the first app's configured name, ClientID its client id and
	// Secret the client secret the fake Entra ID accepts for it.
	App, ClientID, Secret string
	// Apps are every app, the first included.
	Apps []App
	// Tenants are the configured tenants.
	Tenants []Tenant
	// Authority is the authority_host of the configuration; empty means
	// the fake Entra ID's own URL. Set it to put a Proxy in between.
	Authority string
	// Keystore is the keystore of the configuration; empty means
	// "memory".
	Keystore string
}

// App is one app of a World.
type App struct {
	Name, ClientID, Secret string
	// Extra are TOML lines added to the app's table (allowed_scopes).
	Extra []string
}

// Tenant is one tenant of a World and the name of its app.
type Tenant struct {
	Name, ID, Domain, App string
	// Extra are TOML lines added to the tenant's table (allow lists).
	Extra []string
}

// TenantID is the id of the i-th tenant of a World (and of any tenant
// numbered the same way).
func TenantID(i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", 0x7e000000+i, i) }

// NewWorld starts a fake Entra ID with app "partner" and n tenants named
// tenant0 ... tenantN-1 with domains tenantI.onmicrosoft.com, all
// consented to the app.
func NewWorld(t testing.TB, n int) *World {
	t.Helper()
	return NewWorldWith(t, App{Name: "partner", ClientID: "0a0a0a0a-0000-4000-8000-00000000a001",
		Secret: "world-secret-Q~abcdefghijklmnopqrstuvwxyz0123"}, n)
}

// NewWorldWith is NewWorld with the first app given.
func NewWorldWith(t testing.TB, first App, n int) *World {
	t.Helper()
	idp, err := entratest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	w := &World{IdP: idp}
	a := w.AddApp(first.Name, first.ClientID, first.Secret)
	w.App, w.ClientID, w.Secret = a.Name, a.ClientID, a.Secret
	for i := range n {
		w.AddTenant(fmt.Sprintf("tenant%d", i), TenantID(i), a.Name, true)
	}
	return w
}

// AddApp registers an app at the fake Entra ID and adds it to the World's
// configuration.
func (w *World) AddApp(name, clientID, secret string) App {
	a := App{Name: name, ClientID: clientID, Secret: secret}
	w.IdP.AddApp(clientID, secret)
	w.Apps = append(w.Apps, a)
	return a
}

// AddTenant registers a tenant at the fake Entra ID, consented to the
// named app or not, and adds it to the World's configuration.
func (w *World) AddTenant(name, id, app string, consented bool) Tenant {
	t := Tenant{Name: name, ID: id, Domain: name + ".onmicrosoft.com", App: app}
	et := entratest.Tenant{ID: id, Domains: []string{t.Domain}}
	if consented {
		for _, a := range w.Apps {
			if a.Name == app {
				et.ConsentedApps = []string{a.ClientID}
			}
		}
	}
	w.IdP.AddTenant(et)
	w.Tenants = append(w.Tenants, t)
	return t
}

// Configure adds a tenant to the configuration only: the fake Entra ID
// does not know it (AADSTS90002).
func (w *World) Configure(name, id, app string) Tenant {
	t := Tenant{Name: name, ID: id, Domain: name + ".onmicrosoft.com", App: app}
	w.Tenants = append(w.Tenants, t)
	return t
}

// Config is the World's configuration file: authority_host and keystore,
// then the lines in top (top-level keys such as `min_valid = "5s"`), then
// the apps' and the tenants' tables.
func (w *World) Config(top ...string) string {
	var doc strings.Builder
	authority, keystore := w.Authority, w.Keystore
	if authority == "" {
		authority = w.IdP.URL()
	}
	if keystore == "" {
		keystore = "memory"
	}
	fmt.Fprintf(&doc, "authority_host = %q\nkeystore = %q\n", authority, keystore)
	for _, line := range top {
		doc.WriteString(line + "\n")
	}
	for _, a := range w.Apps {
		fmt.Fprintf(&doc, "\n[apps.%s]\nclient_id = %q\n", a.Name, a.ClientID)
		for _, line := range a.Extra {
			doc.WriteString(line + "\n")
		}
	}
	for _, t := range w.Tenants {
		fmt.Fprintf(&doc, "\n[tenants.%s]\nid = %q\napp = %q\ndomains = [%q]\n", t.Name, t.ID, t.App, t.Domain)
		for _, line := range t.Extra {
			doc.WriteString(line + "\n")
		}
	}
	return doc.String()
}

// NewBroker builds a broker over the World's configuration, with the
// top-level lines in top. Options left unset are filled in: HTTPClient
// trusts the fake Entra ID, and Store is a new Store holding every app's
// secret. The broker is closed when the test ends; it is not started.
func (w *World) NewBroker(t testing.TB, opts broker.Options, top ...string) *broker.Broker {
	t.Helper()
	cfg, err := broker.ParseConfig("world.toml", []byte(w.Config(top...)))
	if err != nil {
		t.Fatal(err)
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = w.IdP.Client()
	}
	if opts.Store == nil {
		opts.Store = w.Store(t)
	}
	b, err := broker.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// Store returns a new Store holding every app's secret.
func (w *World) Store(t testing.TB) *Store {
	t.Helper()
	st := NewStore()
	for _, a := range w.Apps {
		if err := st.Set(context.Background(), a.ClientID, keystore.NewSecret(a.Secret)); err != nil {
			t.Fatal(err)
		}
	}
	return st
}
