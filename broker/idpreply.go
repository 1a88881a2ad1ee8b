package broker

// What Entra ID (or whatever answers at authority_host) sends is input like
// any other: its replies are read through a size cap, its tokens are
// checked before they are cached, and nothing it sends reaches an error, a
// log line or a status except a bounded, token-free description.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Bounds on what the broker accepts from Entra ID.
const (
	// maxReplyBytes bounds every HTTP reply body MSAL reads: a token reply
	// is a few KB, a discovery document about 2 KB.
	maxReplyBytes = 64 << 10
	// maxTokenBytes bounds an access token. Entra ID's are 1-4 KB; one
	// carrying a very long roles claim stays well below this.
	maxTokenBytes = 16 << 10
	// maxExpSkew is how far a token's exp claim may be from the expiry
	// MSAL computes from expires_in before the token is refused.
	maxExpSkew = 10 * time.Minute
	// maxMsgBytes bounds the message of an error about Entra ID's reply,
	// which is also the tenant's last_error.
	maxMsgBytes = 1024
	// maxQuoteBytes bounds any one piece of Entra ID's text quoted in a
	// message (an error description, a transport error).
	maxQuoteBytes = 300
)

// errReplyTooLarge is the read error of a reply body over maxReplyBytes.
var errReplyTooLarge = errors.New("Entra ID's reply is larger than 64 KiB; refused")

// withReplyCap returns a shallow copy of c whose transport caps every
// reply body at maxReplyBytes. c itself is not changed.
func withReplyCap(c *http.Client) *http.Client {
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	capped := *c
	capped.Transport = &capTransport{next: next}
	return &capped
}

// capTransport is an http.RoundTripper whose replies' bodies fail with
// errReplyTooLarge once they pass maxReplyBytes. It never reads more than
// one byte past the cap, and refuses a reply whose Content-Length is over
// it without reading its body at all.
type capTransport struct{ next http.RoundTripper }

func (t *capTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > maxReplyBytes {
		resp.Body.Close()
		return nil, errReplyTooLarge
	}
	resp.Body = &cappedBody{rc: resp.Body}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// wrapped transport.
func (t *capTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// cappedBody reads at most maxReplyBytes+1 bytes of rc; reading the byte
// past the cap fails with errReplyTooLarge.
type cappedBody struct {
	rc   io.ReadCloser
	read int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.read > maxReplyBytes {
		return 0, errReplyTooLarge
	}
	if room := maxReplyBytes + 1 - b.read; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.rc.Read(p)
	b.read += int64(n)
	if b.read > maxReplyBytes {
		return n, errReplyTooLarge
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.rc.Close() }

// refused is the error for a token reply the broker will not use:
// transient, since Entra ID may well answer properly next time.
func refused(format string, args ...any) *Error {
	return bounded(&Error{Kind: KindUnavailable, Transient: true, Msg: fmt.Sprintf(format, args...)})
}

// bounded cuts e's message to maxMsgBytes.
func bounded(e *Error) *Error {
	e.Msg = truncate(e.Msg, maxMsgBytes)
	return e
}

// checkReply checks Entra ID's token for tenant t before the broker uses
// it: its size, its claims (tid) and its lifetime. expiresOn is the expiry
// MSAL computed from expires_in as the reply arrived; sent and received are
// when the request went out and the reply came in. All three are wall-clock
// times, like the token's exp claim; the broker's own clock plays no part.
func checkReply(t *tenant, token string, expiresOn, sent, received time.Time) (*claims, *Error) {
	if len(token) > maxTokenBytes {
		return nil, refused("Entra ID returned an access token of %d KiB for tenant %s, over the %d KiB the broker accepts; refused",
			len(token)>>10, t.name, maxTokenBytes>>10)
	}
	c, err := parseClaims(token)
	if err != nil {
		return nil, refused("Entra ID returned an unusable token for tenant %s: %v", t.name, err)
	}
	if !strings.EqualFold(c.TenantID, t.id) {
		return nil, refused("Entra ID returned a token for tenant %q when tenant %s (%s) was requested; refused",
			quote(c.TenantID, 64), t.name, t.id)
	}
	if lifetime := expiresOn.Sub(sent); lifetime < minLifetime || lifetime > maxLifetime {
		return nil, refused("Entra ID returned a token for tenant %s with a lifetime of %s (expires_in must be between %s and %s); refused",
			t.name, lifetime.Round(time.Second), minLifetime, maxLifetime)
	}
	if c.Exp == nil {
		return nil, refused("Entra ID returned a token for tenant %s without an exp claim; refused", t.name)
	}
	exp := time.Unix(int64(min(max(*c.Exp, 0), 1e11)), 0) // 1e11 s is in the year 5138
	if !exp.After(received) {
		return nil, refused("Entra ID returned a token for tenant %s that had already expired when it arrived (exp claim %s, host clock %s); refused: check the host clock (e.g. timedatectl)",
			t.name, stamp(exp), stamp(received))
	}
	if skew := exp.Sub(expiresOn); skew > maxExpSkew || skew < -maxExpSkew {
		which := "later"
		if skew < 0 {
			which, skew = "earlier", -skew
		}
		return nil, refused("Entra ID returned a token for tenant %s whose exp claim (%s) is %s %s than the expiry its expires_in gives on the host clock (%s), more than the %s allowed; refused: check the host clock (e.g. timedatectl)",
			t.name, stamp(exp), skew.Round(time.Second), which, stamp(expiresOn), maxExpSkew)
	}
	return c, nil
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// tokenLike matches what may be a token or another credential in text
// from Entra ID: anything shaped like a JWT, and any long run of base64
// characters (a GUID, with 36 characters, is left alone).
var tokenLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_.-]*|[A-Za-z0-9+/_=-]{40,}`)

// quote makes text from Entra ID safe to show: one line of printable
// UTF-8, anything token-like replaced by "[redacted]", at most limit bytes.
func quote(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
	// Only a prefix far longer than limit is looked at, without the word
	// the cut falls in, so no part of a token survives the cut.
	if prefix := max(16*limit, 4096); len(s) > prefix {
		s = s[:prefix]
		s = s[:strings.LastIndexByte(s, ' ')+1]
	}
	s = tokenLike.ReplaceAllString(s, "[redacted]")
	return truncate(strings.Join(strings.Fields(s), " "), limit)
}

// truncate cuts s to at most limit bytes at a rune boundary, marking the
// cut with "...".
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
