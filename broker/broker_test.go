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
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// newBroker returns a broker with one tenant ("tenant0") against a fresh
// fake Entra ID, with the right secret stored, and nothing prefetched.
func newBroker(t *testing.T) (*broker.Broker, *entratest.Server) {
	t.Helper()
	w := brokertest.NewWorld(t, 1)
	return w.NewBroker(t, broker.Options{}), w.IdP
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
	w := brokertest.NewWorld(t, 1)
	w.Apps[0].Extra = []string{`allowed_scopes = ["https://graph.microsoft.com"]`}
	b, idp := w.NewBroker(t, broker.Options{}), w.IdP
	ctx := context.Background()
	scopes := []string{"https://graph.microsoft.com/.default", "https://graph.microsoft.com/.default"}
	a, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "tenant0", Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "TENANT0", Scopes: scopes[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if a.AccessToken != c.AccessToken || idp.TokenRequests(brokertest.TenantID(0)) != 1 {
		t.Errorf("duplicate scopes made a second entry: %d token requests", idp.TokenRequests(brokertest.TenantID(0)))
	}
	d, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "tenant0", Scopes: []string{broker.DefaultScope}})
	if err != nil || d.AccessToken == a.AccessToken {
		t.Fatalf("default scope: %v", err)
	}
	if _, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "tenant0"}); err != nil || idp.TokenRequests(brokertest.TenantID(0)) != 2 {
		t.Errorf("the app's scopes named explicitly did not share the default entry: %d requests, %v", idp.TokenRequests(brokertest.TenantID(0)), err)
	}
}

func TestMinValidLongerThanLifetimeDoesNotAskAgain(t *testing.T) {
	b, idp := newBroker(t)
	idp.SetLifetime(time.Minute)
	ctx := context.Background()
	if _, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "tenant0", MinValid: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "tenant0", MinValid: 2 * time.Minute})
		wantError(t, err, broker.KindInvalidArgument, "min_valid 2m0s is more than half of tenant tenant0's token lifetime (1m0s); ask for at most 30s")
	}
	if got := idp.TokenRequests(brokertest.TenantID(0)); got != 1 {
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
			tok, err := b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant0", MinValid: time.Second})
			if tok != nil {
				t.Fatalf("served %v", tok)
			}
			wantError(t, err, broker.KindUnavailable, tt.msg, "tenant tenant0")
			for _, issued := range idp.Issued() {
				if strings.Contains(err.Error(), issued) {
					t.Error("the error contains the token")
				}
			}
		})
	}
}

func TestTokenFormatsWithoutValue(t *testing.T) {
	b, _ := newBroker(t)
	tok, err := b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant0"})
	if err != nil {
		t.Fatal(err)
	}
	var logs brokertest.LogBuffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("t", "token", tok, "value", *tok)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("t", "token", tok, "value", *tok)
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok), fmt.Sprint(*tok), fmt.Sprintf("%+v", *tok), logs.String()} {
		if strings.Contains(s, tok.AccessToken) || !strings.Contains(s, brokertest.TenantID(0)) {
			t.Errorf("formatted token: %s", s)
		}
	}
}

func TestTokenMemoBuildsOnce(t *testing.T) {
	b, _ := newBroker(t)
	tok, err := b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant0"})
	if err != nil {
		t.Fatal(err)
	}
	var builds atomic.Int32
	build := func(tk *broker.Token) any { builds.Add(1); return tk.TenantID + "!" }
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			again, err := b.GetToken(context.Background(), broker.TokenRequest{Tenant: "tenant0"})
			if err != nil || again.Memo(build) != brokertest.TenantID(0)+"!" {
				t.Errorf("memo = %v, %v", again.Memo(build), err)
			}
		})
	}
	wg.Wait()
	// Racing first callers may each build once; after that, nobody builds.
	n := builds.Load()
	for range 100 {
		if tok.Memo(build) != brokertest.TenantID(0)+"!" {
			t.Fatal("memo changed")
		}
	}
	if n < 1 || builds.Load() != n {
		t.Errorf("built %d times during the race, %d after", n, builds.Load()-n)
	}
}
