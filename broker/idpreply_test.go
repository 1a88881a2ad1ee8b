package broker_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// What Entra ID sends is input: every reply below, on both tenants at
// once, is refused with a transient UNAVAILABLE naming what is wrong; no
// tenant becomes READY with it; the broker retries with backoff and
// recovers once Entra ID answers properly; and no token, nor the body
// that carried it, shows in the caller's error, the tenants' status or
// the log. No reply body is read past 64 KiB (plus the one byte that
// shows it is over), whatever its size.
func TestIdPReplyIsInput(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tests := []struct {
		name  string
		fault entratest.Fault
		msg   []string
	}{
		{"200 without expires_in", entratest.Fault{ExpiresIn: new(-1)},
			[]string{"unusable token response", "expires_in is missing or not a number"}},
		{"200 with a non-numeric expires_in", entratest.Fault{ExpiresInRaw: "soon"},
			[]string{"unusable token response", "expires_in is missing or not a number"}},
		{"exp a day in the past", entratest.Fault{ExpOffset: -24 * time.Hour},
			[]string{"already expired when it arrived", "exp claim", "host clock 20", "check the host clock"}},
		{"exp an hour after expires_in", entratest.Fault{ExpOffset: time.Hour},
			[]string{"exp claim (20", "later than the expiry its expires_in gives on the host clock (20", "10m0s allowed", "check the host clock"}},
		{"exp 20 minutes before expires_in", entratest.Fault{ExpOffset: -20 * time.Minute},
			[]string{"exp claim (20", "earlier than the expiry its expires_in gives on the host clock (20", "10m0s allowed"}},
		{"a 32 KiB token", entratest.Fault{TokenSize: 32 << 10},
			[]string{"access token of 32 KiB", "over the 16 KiB"}},
		{"a 32 MiB body", entratest.Fault{PadBody: 32 * mib},
			[]string{"Entra ID's reply from https://", "larger than 64 KiB; refused"}},
		{"a 2 MiB token", entratest.Fault{TokenSize: 2 * mib},
			[]string{"Entra ID's reply from https://", "larger than 64 KiB; refused"}},
		{"a 1 MiB error body", entratest.Fault{Status: 500, Body: strings.Repeat("<html>busy</html>", mib/17)},
			[]string{"larger than 64 KiB; refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w := brokertest.NewWorld(t, 2)
			ct := &countingTransport{next: w.IdP.Client().Transport}
			h := newHarnessWith(t, w, 0, broker.Options{HTTPClient: &http.Client{Transport: ct}})
			w.IdP.SetFault("", &tt.fault)
			h.b.Start()
			h.advance(time.Second) // past prefetch_rate's pacing of the three first fetches
			_, err := h.get("tenant0", 0)
			wantError(t, err, broker.KindUnavailable, tt.msg...)
			for i := range 2 {
				wantState(t, h.status(fmt.Sprintf("tenant%d", i)), broker.StateFailed, tt.msg...)
			}

			// Retried with backoff (0.5-1 s doubling): a handful of
			// attempts in 15 seconds, not one per caller.
			before := h.requests(0)
			for range 5 {
				if _, err := h.get("tenant0", 0); err == nil {
					t.Fatal("served a token")
				}
			}
			h.advance(15 * time.Second)
			if n := h.requests(0) - before; n < 2 || n > 6 {
				t.Errorf("%d attempts in 15 seconds, want backoff (2 to 6)", n)
			}
			st := h.status("tenant0")
			wantState(t, st, broker.StateFailed, tt.msg...)
			if len(st.LastError) > 1100 {
				t.Errorf("last error of %d bytes", len(st.LastError))
			}
			listing := fmt.Sprintf("%+v", h.b.ListTenants())
			if len(listing) > 2*2048 {
				t.Errorf("ListTenants of 2 tenants prints %d bytes", len(listing))
			}
			if got := ct.largest(); got > 64<<10+1 {
				t.Errorf("a reply body was read to %d bytes, past the 64 KiB cap", got)
			}

			issued := w.IdP.Issued()
			if len(issued) == 0 && tt.fault.Status == 0 {
				t.Fatal("the fake Entra ID issued no token: the fault was not exercised")
			}
			_, err = h.get("tenant1", 0)
			texts := map[string]string{"the error": err.Error(), "the listing": listing, "the log": h.logs.String()}
			for what, text := range texts {
				for _, tok := range issued {
					if strings.Contains(text, tok) {
						t.Errorf("%s contains an issued token", what)
					}
				}
				if strings.Contains(text, "eyJ") || strings.Contains(text, "xxxxxxxxxxxxxxxx") || strings.Contains(text, "<html>") {
					t.Errorf("%s quotes the reply: %.300s", what, text)
				}
			}

			// Once Entra ID answers properly, every tenant recovers.
			w.IdP.SetFault("", nil)
			h.advance(10 * time.Minute)
			for i := range 2 {
				wantState(t, h.status(fmt.Sprintf("tenant%d", i)), broker.StateReady)
			}
		})
	}
}

// A reply that quotes a token in its error description (as a proxy or a
// confused IdP might) is shown without it: the AADSTS code, the error
// name and the first sentence, with the token redacted.
func TestIdPErrorDescriptionQuotingATokenIsRedacted(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	h := newHarness(t, w, 0)
	h.b.Start()
	h.settle()
	tok, err := h.get("tenant0", 0)
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`{"error":"invalid_request","error_description":"AADSTS99999: The token %s is not accepted here. Trace ID: 1","error_codes":[99999]}`, tok.AccessToken)
	w.IdP.SetFault("", &entratest.Fault{Status: 400, Body: body})
	h.runUntil(h.status("tenant0").NextRefresh)
	st := h.status("tenant0")
	wantState(t, st, broker.StateDegraded, "AADSTS99999", "invalid_request", "The token [redacted] is not accepted here.")
	if strings.Contains(st.LastError, tok.AccessToken[:40]) || strings.Contains(h.logs.String(), tok.AccessToken[:40]) {
		t.Errorf("the token (or its first 40 characters) is in the status or the log: %s", st.LastError)
	}
}

// The broker caps the replies it reads through a copy of the caller's
// HTTP client: the client given in Options is not changed.
func TestCallersHTTPClientIsNotChanged(t *testing.T) {
	t.Parallel()
	w := brokertest.NewWorld(t, 1)
	ct := &countingTransport{next: w.IdP.Client().Transport}
	c := &http.Client{Transport: ct}
	h := newHarnessWith(t, w, 0, broker.Options{HTTPClient: c})
	w.IdP.SetFault("", &entratest.Fault{PadBody: 1 << 20})
	h.b.Start()
	h.settle()
	wantState(t, h.status("tenant0"), broker.StateFailed, "larger than 64 KiB")
	if c.Transport != ct {
		t.Fatalf("the caller's client now has transport %T", c.Transport)
	}
	// Through the caller's own client, the same reply reads whole.
	resp, err := c.PostForm(w.IdP.URL()+"/"+brokertest.TenantID(0)+"/oauth2/v2.0/token", map[string][]string{
		"grant_type": {"client_credentials"}, "client_id": {w.ClientID}, "client_secret": {w.Secret},
		"scope": {"https://api.securitycenter.microsoft.com/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n < 1<<20 {
		t.Errorf("read %d bytes through the caller's client (%v), want the whole padded reply", n, err)
	}
}

// countingTransport records how many bytes were read from each reply body.
type countingTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	max  int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, t: c}
	return resp, nil
}

// largest is the most bytes read from one reply body.
func (c *countingTransport) largest() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.max
}

type countingBody struct {
	io.ReadCloser
	t *countingTransport
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	b.t.mu.Lock()
	b.t.max = max(b.t.max, b.n)
	b.t.mu.Unlock()
	return n, err
}
