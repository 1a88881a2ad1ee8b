package broker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"
)

var testIdP = idpContext{app: "partner", clientID: "c1", tenantID: "t1", consentURL: "https://login.example/t1/adminconsent?client_id=c1", host: "https://login.example"}

func reply(status int, body string, header http.Header) error {
	if header == nil {
		header = http.Header{}
	}
	return msalerrors.CallErr{Resp: &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(strings.NewReader(body))}, Err: fmt.Errorf("http call failed: %d", status)}
}

func entraBody(errName string, code int) string {
	return fmt.Sprintf(`{"error":%q,"error_description":"AADSTS%d: Something happened. More text.\r\nTrace ID: x\r\nCorrelation ID: y\r\nTimestamp: z","error_codes":[%d]}`, errName, code, code)
}

func TestClassifyKnownCodes(t *testing.T) {
	for code, k := range knownAADSTS {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			e := classifyIdPError(reply(400, entraBody("invalid_request", code), nil), testIdP)
			if e.AADSTS != code || e.Kind != k.kind || e.Transient != k.transient || e.TenantOnly != k.tenantOnly {
				t.Errorf("got %+v", e)
			}
			if !strings.HasPrefix(e.Msg, fmt.Sprintf("AADSTS%d", code)) || strings.Contains(e.Msg, "%!") || strings.Contains(e.Msg, "{") {
				t.Errorf("message %q", e.Msg)
			}
		})
	}
	e := classifyIdPError(reply(400, entraBody("unauthorized_client", 700016), nil), testIdP)
	if !strings.Contains(e.Msg, testIdP.consentURL) {
		t.Errorf("700016 without the consent URL: %q", e.Msg)
	}
	e = classifyIdPError(reply(401, entraBody("invalid_client", 7000215), nil), testIdP)
	if !strings.Contains(e.Msg, "brokerctl credential set --app partner") {
		t.Errorf("7000215 without the remedy: %q", e.Msg)
	}
}

func TestClassifyOtherReplies(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		kind      Kind
		transient bool
		retry     time.Duration
		msg       []string
	}{
		{"503 with Retry-After", reply(503, entraBody("temporarily_unavailable", 99999), http.Header{"Retry-After": {"30"}}),
			KindUnavailable, true, 30 * time.Second, []string{"AADSTS99999", "HTTP 503", "Something happened."}},
		{"429", reply(429, `{"error":"too_many_requests"}`, http.Header{"Retry-After": {"7"}}), KindUnavailable, true, 7 * time.Second, []string{"429", "throttled"}},
		{"500 non-JSON", reply(500, "<html>oops</html>", nil), KindUnavailable, true, 0, []string{"HTTP 500"}},
		{"unknown 400 code", reply(400, entraBody("invalid_request", 12345), nil), KindFailedPrecondition, false, 0, []string{"AADSTS12345", "Something happened."}},
		{"network", fmt.Errorf("post: %w", context.Canceled), KindUnavailable, true, 0, []string{"cannot reach Entra ID at https://login.example"}},
		{"timeout", fmt.Errorf("post: %w", context.DeadlineExceeded), KindUnavailable, true, 0, []string{"idp_timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := classifyIdPError(tt.err, testIdP)
			if e.Kind != tt.kind || e.Transient != tt.transient || e.RetryAfter != tt.retry {
				t.Errorf("got kind %v transient %v retry %v", e.Kind, e.Transient, e.RetryAfter)
			}
			for _, m := range tt.msg {
				if !strings.Contains(e.Msg, m) {
					t.Errorf("message %q does not contain %q", e.Msg, m)
				}
			}
			if strings.Contains(e.Msg, "Trace ID") {
				t.Errorf("message keeps Entra's trace trailer: %q", e.Msg)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"": 0, "0": 0, "30": 30 * time.Second, " 5 ": 5 * time.Second, "-3": 0, "99999": time.Hour, "soon": 0,
		now.Add(2 * time.Minute).Format(http.TimeFormat): 2 * time.Minute,
		now.Add(-time.Minute).Format(http.TimeFormat):    0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}
