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

// FuzzParseConfig: any document either fails with a message naming the
// file, or yields a configuration every invariant of Validate holds for.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("[apps.a]\nclient_id = \"00000000-0000-0000-0000-000000000000\"\n[tenants]\nt = { id = \"11111111-1111-1111-1111-111111111111\", domains = [\"a.b.com\"] }\n"))
	f.Add([]byte("allow_uids = [0]\nmin_valid = \"1h\"\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := ParseConfig("f.toml", doc)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(c.Apps) == 0 || len(c.Tenants) == 0 || c.access == nil {
			t.Fatalf("accepted an incomplete configuration: %+v", c)
		}
		for name, tn := range c.Tenants {
			if !IsGUID(tn.ID) || c.Apps[tn.App] == nil || tn.access == nil {
				t.Fatalf("tenant %q accepted with %+v", name, tn)
			}
		}
		for _, a := range c.Apps {
			for _, s := range a.Scopes {
				if ValidateScope(s) != nil {
					t.Fatalf("scope %q accepted", s)
				}
			}
		}
		if _, err := New(c, Options{Store: keystore.NewMemory()}); err != nil {
			t.Fatalf("valid configuration rejected by New: %v", err)
		}
	})
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
		case KindInvalidArgument, KindNotFound, KindFailedPrecondition:
		default:
			t.Fatalf("unexpected kind %v: %s", be.Kind, be.Msg)
		}
	})
}

// FuzzIdPReply: any reply Entra ID (or something in its place) sends is
// classified with a bounded message, never a panic.
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
		if e == nil || e.Msg == "" || len(e.Msg) > 2000 || e.RetryAfter < 0 || e.RetryAfter > time.Hour {
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
