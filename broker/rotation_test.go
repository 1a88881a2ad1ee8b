package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// A credential change while a request with the old secret is in flight
// takes effect at once. Entra ID rotates to a new secret while the old
// secret's request waits at the IdP; SetCredential verifies and stores the
// new one; the old request then fails (the old secret is rejected). That
// failure belongs to the old credential: it must not stick to the tenant,
// and the caller who was waiting gets a token acquired with the new secret.
func TestRotationDuringFlight(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	b := w.NewBroker(t, broker.Options{})
	const rotated = "rotated-secret-Q~2222222222222222222222222"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The first token request, with the old secret, is held at the IdP.
	w.IdP.SetFault("", &entratest.Fault{Delay: time.Second, Times: 1})
	type result struct {
		tok *broker.Token
		err error
	}
	waiting := make(chan result, 1)
	go func() {
		tok, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "tenant0"})
		waiting <- result{tok, err}
	}()
	brokertest.WaitFor(t, "the old secret's request to reach the IdP", func() bool {
		return w.IdP.TokenRequests(brokertest.TenantID(0)) == 1
	})

	w.IdP.AddApp(w.ClientID, rotated) // Entra ID now takes only the new secret
	if _, _, err := b.SetCredential(ctx, broker.SetRequest{App: w.App, Kind: keystore.KindSecret, Value: keystore.NewSecret(rotated)}); err != nil {
		t.Fatal(err)
	}
	r := <-waiting
	if r.err != nil {
		t.Errorf("the caller waiting during the rotation got: %v", r.err)
	}
	brokertest.WaitFor(t, "the old secret's request to land", func() bool {
		return w.IdP.TokenRequests(brokertest.TenantID(0)) >= 2 && b.ListTenants()[0].State != broker.StatePending
	})
	st := b.ListTenants()[0]
	if st.State != broker.StateReady || st.LastError != "" {
		t.Errorf("after the rotation: state %v, last error %q", st.State, st.LastError)
	}
	again, err := b.GetToken(ctx, broker.TokenRequest{Tenant: "tenant0"})
	if err != nil || r.tok != nil && again.AccessToken != r.tok.AccessToken {
		t.Errorf("the next call did not get the cached token: %v", err)
	}
	// The old secret's request, the verification and one acquisition
	// with the new secret.
	if got := w.IdP.TokenRequests(brokertest.TenantID(0)); got != 3 {
		t.Errorf("%d token requests, want 3", got)
	}
}
