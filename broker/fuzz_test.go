package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// The fuzz targets run their seeds (f.Add and testdata/fuzz) in every
// `go test`; to fuzz longer, e.g.:
//
//	go test -run '^$' -fuzz FuzzParseConfig -fuzztime 5m ./broker/

// FuzzParseConfig: any document either fails with one line naming the
// file, or yields a configuration every invariant of Config holds for.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("[apps.a]\nclient_id = \"00000000-0000-0000-0000-000000000000\"\n[tenants]\nt = { id = \"11111111-1111-1111-1111-111111111111\", domains = [\"a.b.com\"] }\n"))
	f.Add([]byte("allow_uids = [0]\nmin_valid = \"1h\"\n"))
	f.Add([]byte("min_valid = 300\nprefetch_rate = \"fast\"\n[tenants.x]\nfoo = { bar = [1, \"a\"] }\n"))
	f.Add([]byte("tenants.a.id = \"11111111-1111-1111-1111-111111111111\"\n[tenants.b]\n[apps]\np = { client_id = \"00000000-0000-0000-0000-000000000000\", scopes = [] }\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		// The decoder accepts only what go-toml's strict decoder
		// accepts, with the same values.
		if ours, err := parseDocument("f.toml", doc); err == nil {
			theirs, terr := decodeWithGoTOML(doc)
			if terr != nil {
				t.Fatalf("accepted a document go-toml refuses: %v", terr)
			}
			if !sameDocument(ours, theirs) {
				t.Fatalf("decoded %+v, go-toml %+v", ours, theirs)
			}
		}
		c, err := ParseConfig("f.toml", doc)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.toml") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line naming the file: %q", err)
			}
			return
		}
		checkConfig(t, c)
		if _, err := New(c, Options{Store: keystore.NewMemory()}); err != nil {
			t.Fatalf("valid configuration rejected by New: %v", err)
		}
	})
}

// checkConfig fails t unless c holds every invariant Config documents.
func checkConfig(t *testing.T, c *Config) {
	t.Helper()
	if !strings.HasPrefix(c.authorityHost, "https://") || strings.HasSuffix(c.authorityHost, "/") ||
		c.keystore != "keyring" && c.keystore != "systemd" && c.keystore != "memory" ||
		c.refreshBefore <= 0 || c.minValid <= 0 || c.idpTimeout <= 0 ||
		c.prefetchConcurrency < 1 || c.prefetchConcurrency > 1024 || c.prefetchRate < 1 || c.prefetchRate > 10000 ||
		c.maxIdPRequests < 1 || c.maxIdPRequests > 4096 || c.access == nil {
		t.Fatalf("accepted out of range: %+v", c)
	}
	if len(c.apps) == 0 || len(c.tenants) == 0 {
		t.Fatalf("accepted an incomplete configuration: %+v", c)
	}
	apps := map[string]bool{}
	for i, a := range c.apps {
		if i > 0 && c.apps[i-1].Name >= a.Name || !IsGUID(a.ClientID) || a.ClientID != strings.ToLower(a.ClientID) || len(a.Scopes) == 0 {
			t.Fatalf("app %+v accepted", a)
		}
		for _, s := range a.Scopes {
			if ValidateScope(s) != nil {
				t.Fatalf("scope %q accepted", s)
			}
		}
		apps[a.Name] = true
	}
	for i, tn := range c.tenants {
		if i > 0 && c.tenants[i-1].Name >= tn.Name || !IsGUID(tn.ID) || tn.ID != strings.ToLower(tn.ID) || !apps[tn.App] || tn.Access == nil {
			t.Fatalf("tenant %+v accepted", tn)
		}
		for _, d := range tn.Domains {
			if d != strings.ToLower(d) {
				t.Fatalf("tenant %q: domain %q not lower-cased", tn.Name, d)
			}
		}
	}
}

// FuzzGetTokenArgs: any tenant, scopes and min_valid from a caller end in
// a classified error (the keystore is empty, so nothing reaches the
// network), never a panic or a token.
func FuzzGetTokenArgs(f *testing.F) {
	c, err := ParseConfig("f.toml", []byte(goodConfig+"domains = [\"contoso.onmicrosoft.com\"]\n"))
	if err != nil {
		f.Fatal(err)
	}
	b, err := New(c, Options{Store: keystore.NewMemory()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(b.Close)
	f.Add("contoso", "", int64(0))
	f.Add("11111111-1111-1111-1111-111111111111", "https://graph.microsoft.com/.default", int64(time.Minute))
	f.Add("CONTOSO.onmicrosoft.com", "https://graph.microsoft.com/User.Read", int64(-1))
	f.Add("", "api://x/.default api://y/.default", int64(25*time.Hour))
	f.Add("nosuch", "\x00", int64(1))
	f.Fuzz(func(t *testing.T, tenant, scopes string, minValid int64) {
		var sc []string
		if scopes != "" {
			sc = strings.Split(scopes, " ")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tok, err := b.GetToken(ctx, TokenRequest{Tenant: tenant, Scopes: sc, MinValid: time.Duration(minValid)})
		var be *Error
		if tok != nil || !errors.As(err, &be) {
			t.Fatalf("GetToken(%q, %q, %d) = %v, %v", tenant, scopes, minValid, tok, err)
		}
		switch be.Kind {
		case KindInvalidArgument, KindNotFound, KindFailedPrecondition, KindPermissionDenied, KindResourceExhausted:
		default:
			t.Fatalf("unexpected kind %v: %s", be.Kind, be.Msg)
		}
	})
}

// FuzzIdPReply: any reply Entra ID (or something in its place) sends is
// classified with a bounded message that quotes nothing token-like, never
// a panic.
func FuzzIdPReply(f *testing.F) {
	f.Add(401, []byte(`{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.\r\nTrace ID: 1","error_codes":[7000215]}`), "")
	f.Add(400, []byte(`{"error":"unauthorized_client","error_codes":[700016]}`), "")
	f.Add(503, []byte(`<html>busy</html>`), "120")
	f.Add(429, []byte(`{"error_codes":[50196,1]}`), "Wed, 21 Oct 2026 07:28:00 GMT")
	f.Add(400, []byte(`{"error_codes":"x"}`), "-1")
	f.Add(200, []byte{}, "99999999999999999999")
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfter string) {
		resp := &http.Response{StatusCode: status, Header: http.Header{"Retry-After": {retryAfter}}, Body: io.NopCloser(bytes.NewReader(body))}
		e := classifyIdPError(msalerrors.CallErr{Resp: resp, Err: errors.New("call failed")}, testIdP)
		if e == nil || e.Msg == "" || len(e.Msg) > maxMsgBytes || tokenLike.MatchString(e.Msg) || e.RetryAfter < 0 || e.RetryAfter > time.Hour {
			t.Fatalf("classified as %+v", e)
		}
	})
}

// FuzzParseClaims: any access token string is decoded or refused, never a
// panic; a decoded token came from a three-part string.
func FuzzParseClaims(f *testing.F) {
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJ0aWQiOiJ4Iiwicm9sZXMiOlsiYSJdLCJleHAiOjF9.c2ln")
	f.Add("not-a-jwt")
	f.Add("a.b.c")
	f.Add("..")
	f.Add("x.eyJ0aWQiOjF9.y")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := parseClaims(token)
		if err == nil && (c == nil || strings.Count(token, ".") != 2) {
			t.Fatalf("parseClaims(%q) = %+v", token, c)
		}
	})
}
