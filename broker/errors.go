package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	msalerrors "github.com/AzureAD/microsoft-authentication-library-for-go/apps/errors"
)

// Kind classifies an Error by what the caller can do about it. The gRPC
// adapter maps each Kind to one status code; nothing else in the core knows
// about gRPC.
type Kind int

// The kinds of Error.
const (
	// KindInternal is a bug or an unexpected condition.
	KindInternal Kind = iota
	// KindNotFound: the tenant or app is not configured, or Entra ID says the
	// tenant does not exist.
	KindNotFound
	// KindInvalidArgument: the request itself is wrong.
	KindInvalidArgument
	// KindFailedPrecondition: a person must act (store or rotate the
	// credential, grant admin consent, fix the configuration).
	KindFailedPrecondition
	// KindUnavailable: Entra ID or the keystore cannot be reached or is
	// throttling, and no valid token is cached; retrying later may work.
	KindUnavailable
	// KindDeadlineExceeded: the caller's deadline passed while waiting.
	KindDeadlineExceeded
	// KindCanceled: the caller gave up.
	KindCanceled
	// KindOutcomeUnknown: a change may or may not have taken effect (the
	// keystore did not answer a write in time); the message says how to
	// find out.
	KindOutcomeUnknown
	// KindPermissionDenied: the configuration does not allow what was
	// asked (a scope outside the app's allowed_scopes); an administrator
	// can change that.
	KindPermissionDenied
	// KindResourceExhausted: a limit of the configuration is reached
	// (limits.max_scope_sets); an administrator can raise it.
	KindResourceExhausted
)

// Error is what the broker returns for every failure: a kind, and a message
// that says what is wrong and what to do. Messages never contain a secret or
// a token.
type Error struct {
	Kind Kind
	// AADSTS is Entra ID's error code (e.g. 7000215), 0 when there is none.
	AADSTS int
	// Transient errors are retried with backoff; others only slowly.
	Transient bool
	// TenantOnly errors concern the tenant, not the app's credential.
	TenantOnly bool
	// RetryAfter is the IdP's Retry-After, 0 when absent.
	RetryAfter time.Duration
	// Msg is the complete message for the user.
	Msg string

	// credential errors are about reading the app's credential from the
	// keystore: the tenant waits until the app's credential can be read,
	// not for a retry of its own.
	credential bool
	cause      error // a sentinel for errors.Is, e.g. errNoCredential
}

func (e *Error) Error() string { return e.Msg }

// Unwrap lets errors.Is find the sentinel behind an Error.
func (e *Error) Unwrap() error { return e.cause }

// errNoCredential is behind the Error of an app with no stored credential.
var errNoCredential = errors.New("no credential stored")

func errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// aadsts describes one Entra ID error code the broker knows what to do
// about. Codes and meanings are from Microsoft's AADSTS error reference.
type aadsts struct {
	kind      Kind
	what      string // one line: what Entra ID said, in plain words (same placeholders)
	remedy    string // what to do; {app}, {client}, {consent} and {tenant} are filled in
	transient bool
	// tenantOnly errors are about the tenant (consent, existence), so they
	// say nothing about whether the credential is good.
	tenantOnly bool
}

var knownAADSTS = map[int]aadsts{
	7000215: {KindFailedPrecondition, "Entra ID rejected the client secret of app {app} (invalid secret)",
		"store the secret's Value (not its Secret ID): brokerctl credential set --app {app}", false, false},
	7000222: {KindFailedPrecondition, "the client secret of app {app} has expired",
		"create a new secret for app {client} in Entra ID, then: brokerctl credential set --app {app}", false, false},
	7000218: {KindFailedPrecondition, "Entra ID received no client secret for app {app}",
		"brokerctl credential set --app {app}", false, false},
	7000112: {KindFailedPrecondition, "app {client} is disabled in tenant {tenant}",
		"ask the tenant's administrator to re-enable the app's service principal", false, true},
	700016: {KindFailedPrecondition, "app {client} is not registered or not consented in tenant {tenant}",
		"a Global Administrator of the tenant must grant admin consent: {consent}", false, true},
	65001: {KindFailedPrecondition, "app {client} lacks consent in tenant {tenant}",
		"a Global Administrator of the tenant must grant admin consent: {consent}", false, true},
	500011: {KindFailedPrecondition, "the resource of the requested scope is not available in tenant {tenant}",
		"check the scope, and that the tenant has the service (e.g. Defender for Endpoint) and has consented: {consent}", false, true},
	90002: {KindNotFound, "Entra ID has no tenant {tenant}",
		"check the tenant id in the configuration", false, true},
	900023: {KindNotFound, "{tenant} is not a valid tenant",
		"check the tenant id in the configuration", false, true},
	90072: {KindFailedPrecondition, "app {client} is not in tenant {tenant}",
		"grant admin consent in the tenant: {consent}", false, true},
	70011: {KindInvalidArgument, "Entra ID rejected the requested scope",
		"request a resource's /.default scope, e.g. " + DefaultScope, false, false},
	1002012: {KindInvalidArgument, "Entra ID rejected the requested scope",
		"request a resource's /.default scope, e.g. " + DefaultScope, false, false},
	700027: {KindFailedPrecondition, "Entra ID rejected the certificate of app {app} (not registered on the app, expired, or the signature does not verify)",
		"upload the certificate (its public part) to app {client} under Certificates & secrets, or store another: brokerctl credential set --app {app} --certificate FILE", false, false},
	700024: {KindFailedPrecondition, "Entra ID rejected the client assertion of app {app} as outside its valid time range",
		"check this host's clock; for an assertion_file, check that whatever writes it replaces it before it expires", false, false},
	700211: {KindFailedPrecondition, "app {client} has no federated credential for the issuer of the assertion",
		"add a federated credential with the assertion's issuer (iss) to app {client}, or fix assertion_file", false, false},
	700212: {KindFailedPrecondition, "app {client} has no federated credential for the audience of the assertion",
		"the assertion's audience (aud) must match the federated credential's, by default api://AzureADTokenExchange", false, false},
	700213: {KindFailedPrecondition, "app {client} has no federated credential for the subject of the assertion",
		"add a federated credential with the assertion's subject (sub) to app {client}", false, false},
	53003: {KindFailedPrecondition, "a Conditional Access policy of tenant {tenant} blocks app {client}",
		"ask the tenant's administrator to exclude the app's service principal from the policy", false, true},
	650052: {KindFailedPrecondition, "tenant {tenant} has not enabled the service the requested scope belongs to",
		"check that the tenant is licensed for it (e.g. Defender for Endpoint) and has consented: {consent}", false, true},
	650056: {KindFailedPrecondition, "app {client} has no consented permissions for the requested resource in tenant {tenant}",
		"add the API permissions to the app and have the tenant's administrator grant consent again: {consent}", false, true},
	50001: {KindFailedPrecondition, "the resource of the requested scope is not available in tenant {tenant}",
		"check the scope, and that the tenant has the service and has consented: {consent}", false, true},
	90038: {KindFailedPrecondition, "tenant {tenant} is in another national cloud than app {app} signs in to",
		`give the tenant an app registered in its cloud, with that cloud set: cloud = "usgov", "usgovhigh" or "dod" in [apps.NAME], app = NAME in the tenant's table`, false, true},
	90033: {KindUnavailable, "Entra ID had a transient error", "the broker retries with backoff", true, false},
	50196: {KindUnavailable, "Entra ID is throttling this app (loop detected)", "the broker backs off", true, false},
	50000: {KindUnavailable, "Entra ID had an internal error", "the broker retries with backoff", true, false},
}

// federatedAADSTS replaces the entries of knownAADSTS whose advice is
// wrong for an app that authenticates with an assertion file.
var federatedAADSTS = map[int]aadsts{
	700027: {KindFailedPrecondition, "Entra ID rejected the federated assertion of app {app}: its signature does not verify with the keys of its issuer",
		"check that assertion_file holds a token the issuer of app {client}'s federated credential signed", false, false},
}

// entraError is the JSON body of an Entra ID error reply.
type entraError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Codes       []int  `json:"error_codes"`
	TraceID     string `json:"trace_id"`
}

// idpContext names what a classified error is about.
type idpContext struct {
	app, clientID, tenantID, consentURL, host string
	federated                                 bool // the app authenticates with an assertion file
}

// classifyIdPError turns an error from MSAL into an Error with the AADSTS
// code, what it means and what to do. MSAL's errors quote Entra ID's reply
// (an InvalidJsonErr holds the whole body, access token included), so
// nothing of their text is used but a bounded, token-free quote.
func classifyIdPError(err error, c idpContext) *Error {
	var own *Error
	if errors.As(err, &own) {
		return own // from the broker's own assertion callback
	}
	if errors.Is(err, errReplyTooLarge) {
		return bounded(&Error{Kind: KindUnavailable, Transient: true,
			Msg: fmt.Sprintf("Entra ID's reply from %s is larger than %d KiB; refused (the broker retries with backoff)", c.host, maxReplyBytes>>10)})
	}
	var ce msalerrors.CallErr
	if errors.As(err, &ce) && ce.Resp != nil {
		return bounded(classifyReply(ce.Resp, c))
	}
	var je msalerrors.InvalidJsonErr
	if errors.As(err, &je) {
		// A 200 reply MSAL could not use.
		return bounded(&Error{Kind: KindUnavailable, Transient: true,
			Msg: fmt.Sprintf("Entra ID (%s) returned an unusable token response: %s; the broker retries with backoff", c.host, unusableReply(je))})
	}
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	switch {
	case errors.As(err, &cve), errors.As(err, &uae), errors.As(err, &hne):
		return bounded(&Error{Kind: KindUnavailable, Transient: true,
			Msg: fmt.Sprintf("the TLS certificate of %s is not trusted (%s); the broker trusts the system roots (SSL_CERT_FILE adds a CA)", c.host, quote(rootCause(err).Error(), maxQuoteBytes))})
	case errors.Is(err, context.DeadlineExceeded):
		return bounded(&Error{Kind: KindUnavailable, Transient: true,
			Msg: fmt.Sprintf("Entra ID (%s) did not answer within the token request timeout (idp_timeout)", c.host)})
	}
	return bounded(&Error{Kind: KindUnavailable, Transient: true,
		Msg: fmt.Sprintf("cannot reach Entra ID at %s: %s", c.host, quote(rootCause(err).Error(), maxQuoteBytes))})
}

// unusableReply says what is wrong with a 200 reply MSAL could not decode,
// from the kind of decoding error alone: MSAL's own text quotes the body.
func unusableReply(je msalerrors.InvalidJsonErr) string {
	inner := errors.Unwrap(je.Err) // MSAL wraps the decoder's error with %w, then adds the body
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case inner == nil:
		return "the reply could not be decoded"
	case errors.As(inner, &syn):
		return "the reply is not JSON"
	case strings.Contains(inner.Error(), "expires_in"), strings.HasPrefix(inner.Error(), "unix time("):
		// MSAL: "expires_in and expires_on are both missing or invalid",
		// or a number field that is not a number (expires_in, ext_expires_in).
		return "expires_in is missing or not a number of seconds"
	case errors.As(inner, &typ):
		return fmt.Sprintf("a member has the wrong type (%s)", quote(typ.Field, 64))
	}
	return "the reply is not a token response"
}

func classifyReply(resp *http.Response, c idpContext) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var ee entraError
	_ = json.Unmarshal(body, &ee)
	e := &Error{RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	if len(ee.Codes) > 0 {
		e.AADSTS = ee.Codes[0]
	}
	k, ok := knownAADSTS[e.AADSTS]
	if f, fok := federatedAADSTS[e.AADSTS]; fok && c.federated {
		k, ok = f, true
	}
	if ok {
		r := strings.NewReplacer("{app}", c.app, "{client}", c.clientID, "{consent}", c.consentURL, "{tenant}", c.tenantID)
		e.Kind, e.Transient, e.TenantOnly = k.kind, k.transient, k.tenantOnly
		e.Msg = fmt.Sprintf("AADSTS%d: %s; %s", e.AADSTS, r.Replace(k.what), r.Replace(k.remedy))
		if k.transient {
			e.Msg = fmt.Sprintf("AADSTS%d (HTTP %d): %s; %s", e.AADSTS, resp.StatusCode, r.Replace(k.what), r.Replace(k.remedy))
		}
		return e
	}
	what := fmt.Sprintf("Entra ID answered HTTP %d", resp.StatusCode)
	if oauthErrorName.MatchString(ee.Error) {
		what += " " + ee.Error
	}
	if e.AADSTS != 0 {
		what = fmt.Sprintf("AADSTS%d: %s: %s", e.AADSTS, what, firstSentence(ee.Description))
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		e.Kind, e.Transient, e.Msg = KindUnavailable, true, what+" (throttled); the broker backs off"
	case resp.StatusCode >= 500:
		e.Kind, e.Transient, e.Msg = KindUnavailable, true, what+"; the broker retries with backoff"
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized:
		e.Kind, e.Msg = KindFailedPrecondition, what+"; check the app and tenant configuration"
	default:
		e.Kind, e.Transient, e.Msg = KindUnavailable, true, what
	}
	return e
}

// oauthErrorName matches the OAuth error names Entra ID sends
// ("invalid_client"); anything else in the error member is not shown.
var oauthErrorName = regexp.MustCompile(`^[a-z_]{1,64}$`)

// firstSentence keeps the first sentence of an Entra ID error description,
// without the trace and correlation ids and timestamps that follow it,
// quoted (bounded, token-free).
func firstSentence(s string) string {
	if _, rest, ok := strings.Cut(s, ": "); ok && strings.HasPrefix(s, "AADSTS") {
		s = rest
	}
	if i := strings.Index(s, ". "); i >= 0 {
		s = s[:i+1]
	}
	if i := strings.Index(s, "Trace ID:"); i >= 0 {
		s = s[:i]
	}
	return quote(s, maxQuoteBytes)
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		return min(max(time.Duration(s)*time.Second, 0), time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), time.Hour)
	}
	return 0
}

// rootCause is the innermost wrapped error, which for network errors is the
// useful part ("connection refused") without MSAL's request dump.
func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}
