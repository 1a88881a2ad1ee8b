package broker

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"
)

// A token-shaped string, as Entra ID's are: header, payload, signature.
var sampleJWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(`{"tid":"t1","roles":["a"],"exp":1}`)) +
	"." + strings.Repeat("c2lnbmF0dXJl", 20)

func TestQuote(t *testing.T) {
	guid := "6b1f0c1e-2d3a-4b5c-9d8e-7f6a5b4c3d2e"
	for in, want := range map[string]string{
		"Invalid client secret provided.":                  "Invalid client secret provided.",
		"tenant " + guid + " not found":                    "tenant " + guid + " not found",
		"token " + sampleJWT + " refused":                  "token [redacted] refused",
		"short eyJhbGciOiJIUzI1NiJ9.e30.x jwt":             "short [redacted] jwt",
		"opaque " + strings.Repeat("QUJD", 12) + " end":    "opaque [redacted] end",
		"line\r\nbreaks\tand\x00controls\x1b[31m and \xff": "line breaks and controls [31m and",
	} {
		if got := quote(in, 300); got != want {
			t.Errorf("quote(%q) = %q, want %q", in, got, want)
		}
	}
	if got := quote(strings.Repeat("word ", 1000), 300); len(got) > 300 || !strings.HasSuffix(got, "...") {
		t.Errorf("a long text quoted as %d bytes: %q", len(got), got)
	}
	// A token cut by the prefix the quote looks at leaves no piece behind,
	// however much filler comes before it.
	for _, filler := range []string{" ", "\x00", "\r\n", "\u00a0"} {
		n := 16*300/len(filler) - 2
		got := quote(strings.Repeat(filler, n)+sampleJWT, 300)
		if got != "" && got != "[redacted]" {
			t.Errorf("after %d × %q, quote kept %q of a token cut at the limit", n, filler, got)
		}
	}
}

// FuzzQuote: whatever the text, the quote is short, one line of printable
// UTF-8, and holds no long base64 run.
func FuzzQuote(f *testing.F) {
	f.Add("AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1", 300)
	f.Add(sampleJWT, 64)
	f.Add(strings.Repeat("\x00", 100)+strings.Repeat("A", 100), 50)
	long := regexp.MustCompile(`[A-Za-z0-9+/_=-]{40,}|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]`)
	f.Fuzz(func(t *testing.T, s string, max int) {
		max = 16 + abs(max)%1024
		q := quote(s, max)
		if len(q) > max || strings.ContainsFunc(q, func(r rune) bool { return !unicode.IsPrint(r) }) || long.MatchString(q) {
			t.Fatalf("quote(%q, %d) = %q", s, max, q)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// jwtWith is a JWT whose payload is claims.
func jwtWith(claims string) string {
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".c2ln"
}

func TestCheckReplyTimes(t *testing.T) {
	tn := &tenant{name: "contoso", id: "t1"}
	sent := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	received := sent.Add(time.Second)
	expiresOn := received.Add(time.Hour)
	at := func(d time.Duration) string {
		return jwtWith(fmt.Sprintf(`{"tid":"t1","exp":%d}`, expiresOn.Add(d).Unix()))
	}
	for _, ok := range []time.Duration{0, 9 * time.Minute, -9 * time.Minute, 10 * time.Minute} {
		if _, err := checkReply(tn, at(ok), expiresOn, sent, received); err != nil {
			t.Errorf("exp %v from expires_in refused: %s", ok, err.Msg)
		}
	}
	for _, tt := range []struct {
		token string
		msg   []string
	}{
		{jwtWith(`{"tid":"t1"}`), []string{"tenant contoso without an exp claim; refused"}},
		{jwtWith(`{"tid":"t1","exp":"tomorrow"}`), []string{"not a JSON object of claims"}},
		{at(-time.Hour), []string{"already expired when it arrived", "exp claim 2026-03-01T12:00:01Z", "host clock 2026-03-01T12:00:01Z"}},
		{at(-2 * time.Hour), []string{"already expired"}},
		{at(11 * time.Minute), []string{"exp claim (2026-03-01T13:11:01Z) is 11m0s later than the expiry its expires_in gives on the host clock (2026-03-01T13:00:01Z)", "10m0s allowed", "check the host clock"}},
		{at(-30 * time.Minute), []string{"is 30m0s earlier than"}},
		{jwtWith(`{"tid":"t1","exp":1e300}`), []string{"later than"}},
		{jwtWith(`{"tid":"` + strings.Repeat("A", 2000) + `","exp":1}`), []string{`tenant "[redacted]" when tenant contoso (t1) was requested`}},
		{jwtWith(`{"tid":"t1","exp":1,"pad":"` + strings.Repeat("x", 13<<10) + `"}`), []string{"access token of 17 KiB", "over the 16 KiB"}},
	} {
		_, err := checkReply(tn, tt.token, expiresOn, sent, received)
		if err == nil || err.Kind != KindUnavailable || !err.Transient {
			t.Errorf("%.80s: got %+v, want a transient UNAVAILABLE", tt.token, err)
			continue
		}
		for _, m := range tt.msg {
			if !strings.Contains(err.Msg, m) {
				t.Errorf("message %q lacks %q", err.Msg, m)
			}
		}
		if len(err.Msg) > maxMsgBytes || strings.Contains(err.Msg, tt.token) {
			t.Errorf("message of %d bytes: %.200q", len(err.Msg), err.Msg)
		}
	}
}

// MSAL's InvalidJsonErr quotes the whole reply; the broker says what is
// wrong without it.
func TestClassifyUnusableReplies(t *testing.T) {
	// As MSAL's comm.URLFormCall builds it.
	invalid := func(body string, decode error) error {
		return msalerrors.InvalidJsonErr{Err: fmt.Errorf("json decode error: %w\nraw message was: %s", decode, body)}
	}
	body := `{"token_type":"Bearer","access_token":"` + sampleJWT + `"}`
	var syn *json.SyntaxError
	synErr := json.Unmarshal([]byte("{"+sampleJWT), &struct{}{})
	if !errors.As(synErr, &syn) {
		t.Fatalf("%v is not a SyntaxError", synErr)
	}
	_, numErr := strconv.Atoi("soon")
	typErr := json.Unmarshal([]byte(`{"access_token":1}`), &struct {
		AccessToken string `json:"access_token"`
	}{})
	for _, tt := range []struct {
		err  error
		want string
	}{
		{invalid(body, errors.New("expires_in and expires_on are both missing or invalid")), "expires_in is missing or not a number of seconds"},
		{invalid(body, fmt.Errorf("unix time(%q) could not be converted from string to int: %w", "soon", numErr)), "expires_in is missing or not a number of seconds"},
		{invalid("{"+sampleJWT, synErr), "the reply is not JSON"},
		{invalid(body, typErr), "a member has the wrong type (access_token)"},
		{invalid(body, errors.New(sampleJWT)), "the reply is not a token response"},
		{msalerrors.InvalidJsonErr{Err: errors.New("raw message was: " + body)}, "the reply could not be decoded"},
		{fmt.Errorf("server response error:\n %w", errors.New(`malformed HTTP response "`+sampleJWT+`"`)), `cannot reach Entra ID at https://login.example: malformed HTTP response "[redacted]"`},
		{reply(400, `{"error":"`+sampleJWT+`","error_description":"AADSTS12345: Bad `+sampleJWT+`. More.","error_codes":[12345]}`, nil), "AADSTS12345: Entra ID answered HTTP 400: Bad [redacted]; check"},
		{reply(500, strings.Repeat("<p>"+sampleJWT, 200), nil), "Entra ID answered HTTP 500; the broker retries"},
	} {
		e := classifyIdPError(tt.err, testIdP)
		if e.Kind != KindUnavailable && e.Kind != KindFailedPrecondition || !strings.Contains(e.Msg, tt.want) {
			t.Errorf("classified as %v %q, want %q", e.Kind, e.Msg, tt.want)
		}
		if strings.Contains(e.Msg, "eyJ") || strings.Contains(e.Msg, "c2lnbmF0dXJl") || len(e.Msg) > maxMsgBytes {
			t.Errorf("message quotes the reply: %q", e.Msg)
		}
	}
}

// The cap applies to the body as read, whether or not the reply says how
// long it is; a reply that says it is too long is refused unread.
func TestCapTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		if r.URL.Query().Get("length") != "" {
			w.Header().Set("Content-Length", strconv.Itoa(n))
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, strings.Repeat("x", n))
	}))
	defer srv.Close()
	c := withReplyCap(srv.Client())
	if c.Transport == srv.Client().Transport {
		t.Fatal("withReplyCap changed nothing")
	}
	get := func(query string) (int, error) {
		resp, err := c.Get(srv.URL + "/?" + query)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return len(b), err
	}
	for _, q := range []string{"n=65536", "n=65536&length=1"} {
		if n, err := get(q); n != maxReplyBytes || err != nil {
			t.Errorf("%s: read %d bytes, %v; want the whole 64 KiB", q, n, err)
		}
	}
	for _, q := range []string{"n=65537", "n=4000000", "n=65537&length=1", "n=4000000&length=1"} {
		n, err := get(q)
		if !errors.Is(err, errReplyTooLarge) || n > maxReplyBytes+1 {
			t.Errorf("%s: read %d bytes, %v; want errReplyTooLarge within the cap", q, n, err)
		}
		if strings.Contains(q, "length") && n != 0 {
			t.Errorf("%s: read %d bytes of a reply whose Content-Length is over the cap", q, n)
		}
	}
}
