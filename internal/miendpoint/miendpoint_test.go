package miendpoint_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/internal/miendpoint"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

func TestScope(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"https://graph.microsoft.com", "https://graph.microsoft.com/.default", ""},
		{"https://graph.microsoft.com/", "https://graph.microsoft.com/.default", ""},
		{"https://graph.microsoft.com/.default", "https://graph.microsoft.com/.default", ""},
		{"00000003-0000-0000-c000-000000000000", "00000003-0000-0000-c000-000000000000/.default", ""},
		{"", "", "resource is empty"},
		{"/", "", `resource "/" names no resource`},
		{strings.Repeat("a", 1025), "", "at most 1024"},
	} {
		got, err := miendpoint.Scope(c.in)
		if got != c.want || (err == nil) != (c.err == "") || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("Scope(%.40q) = %q, %v; want %q, error containing %q", c.in, got, err, c.want, c.err)
		}
	}
}

func jwt(claims string) string {
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(claims)) + ".c2ln"
}

func TestClientID(t *testing.T) {
	const id = "0a0a0a0a-0000-4000-8000-00000000a001"
	for _, c := range []struct{ token, want string }{
		{jwt(`{"appid":"` + id + `"}`), id},
		{jwt(`{"azp":"` + strings.ToUpper(id) + `"}`), id},
		{jwt(`{"appid":"not a guid\nx"}`), ""},
		{jwt(`[]`), ""},
		{"not.a.jwt!", ""},
		{"two.parts", ""},
	} {
		if got := miendpoint.ClientID(c.token); got != c.want {
			t.Errorf("ClientID(%q) = %q, want %q", c.token, got, c.want)
		}
	}
}

// Every gRPC status the token function returns maps to the status the
// SDKs handle best, with the message in error_description, and the token
// path never answers 404.
func TestStatusMapping(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		name   string
	}{
		{status.Error(codes.InvalidArgument, "bad scope"), 400, "invalid_request"},
		{status.Error(codes.NotFound, "tenant not configured"), 400, "invalid_request"},
		{status.Error(codes.PermissionDenied, "not allowed"), 403, "access_denied"},
		{status.Error(codes.Unauthenticated, "untrusted daemon"), 403, "access_denied"},
		{status.Error(codes.FailedPrecondition, "grant admin consent: https://x/adminconsent?a=1&b=2"), 403, "failed_precondition"},
		{status.Error(codes.ResourceExhausted, "too many scope sets"), 429, "too_many_requests"},
		{status.Error(codes.Unavailable, "Entra ID is down"), 503, "temporarily_unavailable"},
		{fmt.Errorf("wrapped: %w", status.Error(codes.DeadlineExceeded, "no answer")), 503, "temporarily_unavailable"},
		{status.Error(codes.Internal, "bug"), 500, "internal"},
		{errors.New("no status"), 500, "internal"},
	} {
		ep, get := serve(t, func(context.Context, string) (*brokerv1.GetTokenResponse, error) { return nil, c.err })
		code, body := get(url.Values{"api-version": {"2019-08-01"}, "resource": {"https://graph.microsoft.com"}}, ep.Secret())
		var e struct{ Error, ErrorDescription string }
		e.ErrorDescription, _ = body["error_description"].(string)
		e.Error, _ = body["error"].(string)
		var se interface{ GRPCStatus() *status.Status }
		want := c.err.Error()
		if errors.As(c.err, &se) {
			want = se.GRPCStatus().Message()
		}
		if code != c.status || e.Error != c.name || !strings.Contains(e.ErrorDescription, want) {
			t.Errorf("%v: %d %v; want %d %q with the message", c.err, code, body, c.status, c.name)
		}
	}
}

// A token answer carries what App Service sends; the scope reaches the
// token function as R/.default; Options.Scopes narrows what is served.
func TestTokenAnswer(t *testing.T) {
	exp := time.Unix(1_900_000_000, 0)
	var asked []string
	tok := jwt(`{"appid":"0a0a0a0a-0000-4000-8000-00000000a001"}`)
	ep, get := serve(t, func(_ context.Context, scope string) (*brokerv1.GetTokenResponse, error) {
		asked = append(asked, scope)
		return &brokerv1.GetTokenResponse{AccessToken: tok, ExpiresAt: timestamppb.New(exp), TokenType: "Bearer"}, nil
	}, "https://graph.microsoft.com/.default")
	code, body := get(url.Values{"api-version": {"2019-08-01"}, "resource": {"https://graph.microsoft.com/"}}, ep.Secret())
	want := map[string]any{"access_token": tok, "expires_on": "1900000000", "resource": "https://graph.microsoft.com/",
		"token_type": "Bearer", "client_id": "0a0a0a0a-0000-4000-8000-00000000a001"}
	if code != 200 || fmt.Sprint(body) != fmt.Sprint(want) {
		t.Errorf("answer %d %v, want 200 %v", code, body, want)
	}
	code, body = get(url.Values{"api-version": {"2019-08-01"}, "resource": {"https://vault.azure.net"}}, ep.Secret())
	if code != 403 || body["error"] != "access_denied" {
		t.Errorf("a scope outside Options.Scopes: %d %v, want 403 access_denied", code, body)
	}
	if fmt.Sprint(asked) != "[https://graph.microsoft.com/.default]" {
		t.Errorf("the token function was asked for %v, want the one allowed scope once", asked)
	}
}

// serve starts an endpoint over token and returns a function that GETs
// the token path with the query and header.
func serve(t *testing.T, token miendpoint.TokenFunc, scopes ...string) (*miendpoint.Server, func(q url.Values, header string) (int, map[string]any)) {
	t.Helper()
	ep, err := miendpoint.Listen(token, miendpoint.Options{Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ep.Serve() }()
	t.Cleanup(func() {
		ep.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ep, func(q url.Values, header string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, ep.URL()+"?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(miendpoint.HeaderName, header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("answer %d is not JSON: %q", resp.StatusCode, b)
		}
		return resp.StatusCode, body
	}
}
