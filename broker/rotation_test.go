package broker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
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

// Rotating from a secret to a certificate under load fails no call: a
// herd of callers, whose min_valid makes some of them acquire tokens of
// their own as the clock moves, runs on while SetCredential switches to
// the certificate and Entra ID then drops the secret. After the switch
// every request that reaches Entra ID authenticates with the certificate.
func TestRotationToCertificateUnderLoad(t *testing.T) {
	t.Parallel()
	const tenants, callers = 3, 9
	w := brokertest.NewWorld(t, tenants)
	h := newCredHarness(t, w, broker.Options{})
	h.b.Start()
	h.advance(time.Second)
	cert, pemData := newCert(t, h.clk.Now(), h.clk.Now().Add(365*24*time.Hour))
	w.IdP.AddCertificate(w.ClientID, cert)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var calls atomic.Int64
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := h.b.GetToken(ctx, broker.TokenRequest{Tenant: fmt.Sprintf("tenant%d", i%tenants), MinValid: 30 * time.Minute})
				cancel()
				calls.Add(1)
				if err != nil {
					errs <- fmt.Errorf("caller %d: %w", i, err)
					return
				}
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	// step moves the clock 5 minutes through what falls due: past half a
	// token's life, callers acquire fresh tokens themselves.
	step := func() {
		h.advance(5 * time.Minute)
		n := calls.Load()
		brokertest.WaitFor(t, "callers to call again", func() bool { return calls.Load() > n+callers })
	}
	for range 8 {
		step()
	}
	if _, _, err := setCert(h, w.App, pemData); err != nil {
		t.Fatal(err)
	}
	w.IdP.RemoveSecret(w.ClientID)
	h.settle() // every flight with the secret has landed
	sent, granted := w.IdP.TotalTokenRequests(), make([]int, tenants)
	for i := range tenants {
		granted[i] = len(w.IdP.ClientAuths(brokertest.TenantID(i)))
	}
	for range 30 {
		step()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var after []entratest.ClientAuth
	for i := range tenants {
		after = append(after, w.IdP.ClientAuths(brokertest.TenantID(i))[granted[i]:]...)
	}
	if got := w.IdP.TotalTokenRequests() - sent; got != len(after) || got < 2*tenants {
		t.Errorf("%d token requests after the switch, %d granted; want every one granted, at least two per tenant", got, len(after))
	}
	for _, a := range after {
		if a.Method != "certificate" || a.Thumbprint != entratest.Thumbprint(cert) {
			t.Errorf("after the switch: %s %s", a.Method, a.Thumbprint)
		}
	}
	t.Logf("%d calls, %d token requests after the switch", calls.Load(), len(after))
}
