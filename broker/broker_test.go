package broker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/logbuf"
	"github.com/tokenbroker/tokenbroker/keystore"
)

const (
	testClient = "0b0b0b0b-0000-4000-8000-00000000b001"
	testSecret = "core-test-secret-Q~xyz"
	testTenant = "7e7e7e7e-0000-4000-8000-000000000001"
)

// newBroker returns a broker with one tenant ("t") against a fresh fake
// Entra ID, with the right secret stored, and nothing prefetched.
func newBroker(t *testing.T) (*broker.Broker, *entratest.Server) {
	t.Helper()
	idp, err := entratest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(idp.Close)
	idp.AddApp(testClient, testSecret)
	idp.AddTenant(entratest.Tenant{ID: testTenant, ConsentedApps: []string{testClient}})
	cfg, err := broker.ParseConfig("t.toml", fmt.Appendf(nil, `authority_host = %q
keystore = "memory"
[apps.a]
client_id = %q
[tenants.t]
id = %q
`, idp.URL(), testClient, testTenant))
	if err != nil {
		t.Fatal(err)
	}
	store := keystore.NewMemory()
	if err := store.Set(context.Background(), testClient, keystore.NewSecret(testSecret)); err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(cfg, broker.Options{Store: store, HTTPClient: idp.Client()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b, idp
}

func wantError(t *testing.T, err error, kind broker.Kind, msgs ...string) {
	t.Helper()
	var be *broker.Error
	if !errors.As(err, &be) {
		t.Fatalf("error %v is not a *broker.Error", err)
	}
	if be.Kind != kind {
		t.Errorf("kind = %v, want %v (%s)", be.Kind, kind, be.Msg)
	}
	for _, m := range msgs {
		if !strings.Contains(be.Msg, m) {
			t.Errorf("message %q does not contain %q", be.Msg, m)
		}
	}
}

func TestScopeOrderSharesOneToken(t *testing.T) {
	b, idp := newBroker(t)
	ctx := context.Background()
	scopes := []string{"https://graph.microsoft.com/.default", "https://graph.microsoft.com/.default"}
	a, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "t", Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "T", Scopes: scopes[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if a.AccessToken != c.AccessToken || idp.TokenRequests(testTenant) != 1 {
		t.Errorf("duplicate scopes made a second entry: %d token requests", idp.TokenRequests(testTenant))
	}
	d, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "t", Scopes: []string{broker.DefaultScope}})
	if err != nil || d.AccessToken == a.AccessToken {
		t.Fatalf("default scope: %v", err)
	}
	if _, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "t"}); err != nil || idp.TokenRequests(testTenant) != 2 {
		t.Errorf("the app's scopes named explicitly did not share the default entry: %d requests, %v", idp.TokenRequests(testTenant), err)
	}
}

func TestMinValidLongerThanLifetimeDoesNotAskAgain(t *testing.T) {
	b, idp := newBroker(t)
	idp.SetLifetime(time.Minute)
	ctx := context.Background()
	if _, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "t", MinValid: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "t", MinValid: 2 * time.Minute})
		wantError(t, err, broker.KindInvalidArgument, "min_valid 2m0s is longer than a new token")
	}
	if got := idp.TokenRequests(testTenant); got != 1 {
		t.Errorf("token requests = %d, want 1", got)
	}
}

func TestUnusableAnswersAreRefused(t *testing.T) {
	zero, year := 0, 365*24*3600
	tests := []struct {
		name  string
		fault entratest.Fault
		msg   string
	}{
		{"not a JWT", entratest.Fault{NotJWT: true}, "not a JWT"},
		{"foreign tid", entratest.Fault{WrongTenantID: "99999999-0000-4000-8000-000000000009"}, "99999999-0000-4000-8000-000000000009"},
		{"expires_in zero", entratest.Fault{ExpiresIn: &zero}, "lifetime"},
		{"expires_in a year", entratest.Fault{ExpiresIn: &year}, "lifetime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, idp := newBroker(t)
			idp.SetFault("", &tt.fault)
			tok, err := b.GetToken(context.Background(), broker.TokenRequest{Tenant: "t", MinValid: time.Second})
			if tok != nil {
				t.Fatalf("served %v", tok)
			}
			wantError(t, err, broker.KindUnavailable, tt.msg, "tenant t")
			for _, issued := range idp.Issued() {
				if strings.Contains(err.Error(), issued) {
					t.Error("the error contains the token")
				}
			}
		})
	}
}

func TestNoCredential(t *testing.T) {
	_, idp := newBroker(t)
	// A second broker against the same fake, with an empty keystore.
	cfg, _ := broker.ParseConfig("t.toml", fmt.Appendf(nil, "authority_host = %q\n[apps.a]\nclient_id = %q\n[tenants.t]\nid = %q\n", idp.URL(), testClient, testTenant))
	empty, err := broker.New(cfg, broker.Options{Store: keystore.NewMemory(), HTTPClient: idp.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	_, err = empty.GetToken(context.Background(), broker.TokenRequest{Tenant: "t"})
	wantError(t, err, broker.KindFailedPrecondition, "no credential stored for app a", "brokerctl credential set --app a")
	if st := empty.ListTenants()[0]; st.State != broker.StateNoCredential {
		t.Errorf("state = %v, want no-credential", st.State)
	}
	if idp.TotalTokenRequests() != 0 {
		t.Error("a token request was made without a credential")
	}
	// Setting one brings the tenant up.
	if _, err := empty.SetCredential(context.Background(), "a", keystore.NewSecret(testSecret)); err != nil {
		t.Fatal(err)
	}
	if _, err := empty.GetToken(context.Background(), broker.TokenRequest{Tenant: "t"}); err != nil {
		t.Fatal(err)
	}
}

func TestTokenFormatsWithoutValue(t *testing.T) {
	b, _ := newBroker(t)
	tok, err := b.GetToken(context.Background(), broker.TokenRequest{Tenant: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var logs logbuf.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("t", "token", tok, "value", *tok)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("t", "token", tok, "value", *tok)
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok), fmt.Sprint(*tok), fmt.Sprintf("%+v", *tok), logs.String()} {
		if strings.Contains(s, tok.AccessToken) || !strings.Contains(s, testTenant) {
			t.Errorf("formatted token: %s", s)
		}
	}
}

func TestTokenMemoBuildsOnce(t *testing.T) {
	b, _ := newBroker(t)
	tok, err := b.GetToken(context.Background(), broker.TokenRequest{Tenant: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var builds atomic.Int32
	build := func(tk *broker.Token) any { builds.Add(1); return tk.TenantID + "!" }
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			again, err := b.GetToken(context.Background(), broker.TokenRequest{Tenant: "t"})
			if err != nil || again.Memo(build) != testTenant+"!" {
				t.Errorf("memo = %v, %v", again.Memo(build), err)
			}
		})
	}
	wg.Wait()
	// Racing first callers may each build once; after that, nobody builds.
	n := builds.Load()
	for range 100 {
		if tok.Memo(build) != testTenant+"!" {
			t.Fatal("memo changed")
		}
	}
	if n < 1 || builds.Load() != n {
		t.Errorf("built %d times during the race, %d after", n, builds.Load()-n)
	}
}

func TestNoCredentialWarnedOncePerApp(t *testing.T) {
	_, idp := newBroker(t)
	var doc strings.Builder
	fmt.Fprintf(&doc, "authority_host = %q\n[apps.a]\nclient_id = %q\n", idp.URL(), testClient)
	for i := range 5 {
		fmt.Fprintf(&doc, "[tenants.t%d]\nid = \"7e7e7e7e-0000-4000-8000-00000000000%d\"\n", i, i)
	}
	cfg, err := broker.ParseConfig("t.toml", []byte(doc.String()))
	if err != nil {
		t.Fatal(err)
	}
	var logs logbuf.Buffer
	b, err := broker.New(cfg, broker.Options{Store: keystore.NewMemory(), HTTPClient: idp.Client(),
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Start()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(logs.String(), "no credential stored") < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("not every tenant reported the missing credential:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("%d warnings for one app without a credential, want 1:\n%s", n, logs.String())
	}
	for _, st := range b.ListTenants() {
		if st.State != broker.StateNoCredential {
			t.Errorf("%s: state %v", st.Name, st.State)
		}
	}
}
