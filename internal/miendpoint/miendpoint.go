// Package miendpoint serves access tokens over loopback HTTP in the Azure
// App Service managed-identity protocol (api-version 2019-08-01), so that
// the managed-identity credential of every Azure SDK (Go azidentity,
// Python azure-identity, .NET, Java, JavaScript) gets tokens from a
// TokenFunc, in practice brokerd, with no code change. `brokerctl exec`
// runs a program with one of these endpoints in its environment
// (IDENTITY_ENDPOINT and IDENTITY_HEADER).
//
// The protocol: GET URL?api-version=2019-08-01&resource=R with the header
// X-IDENTITY-HEADER: SECRET answers 200 with the JSON object
// {"access_token","expires_on","resource","token_type","client_id"},
// expires_on in unix seconds as a string. The resource R stands for the
// scope R/.default.
//
// Security role: the endpoint listens on 127.0.0.1 only, on a port the
// kernel picks. Any local user can connect to it, so every token request
// must carry SECRET, 32 random bytes only the program's environment holds
// (compared in constant time); a missing or wrong one is 401. The Host
// header must be exactly 127.0.0.1:PORT, so a web page that rebinds a DNS
// name to 127.0.0.1 is refused (403). Only GET is served (405). Requests
// are bounded in header size and time, at most maxConns connections are
// open at once (more wait to be accepted), and at most maxInFlight token
// requests wait for the TokenFunc at once (429 beyond). The endpoint keeps
// no token: the TokenFunc (brokerd's cache) is the cache.
//
// Errors are JSON {"error","error_description"}, never 404 on the token
// path (SDKs retry a 404 for about 20 seconds): a bad request is 400, a
// resource outside the allowed scopes 403, and a TokenFunc error is mapped
// from its gRPC status to what the SDKs do best with it: UNAVAILABLE and
// DEADLINE_EXCEEDED are 503 and RESOURCE_EXHAUSTED 429, which they retry;
// PERMISSION_DENIED, UNAUTHENTICATED and FAILED_PRECONDITION are 403 and
// INVALID_ARGUMENT and NOT_FOUND 400, which they report at once with the
// body, so brokerd's message (what to do) reaches the program's error.
package miendpoint

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// APIVersion is the App Service managed-identity API version served.
const APIVersion = "2019-08-01"

// Path is the token path of the endpoint's URL.
const Path = "/msi/token"

// HeaderName is the request header that must carry the secret.
const HeaderName = "X-IDENTITY-HEADER"

// Bounds on a request. Anything the SDKs send is far smaller.
const (
	maxHeaderBytes    = 8 << 10
	maxResourceLength = 1024
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 30 * time.Second
	maxInFlight       = 32
	maxConns          = 64
)

// identitySelectors are the query parameters that ask for a user-assigned
// identity. The endpoint serves one identity, the tenant's app.
var identitySelectors = []string{"client_id", "object_id", "principal_id", "mi_res_id", "msi_res_id"}

// TokenFunc gets an access token for one /.default scope. Its errors carry
// gRPC statuses (as broker/client's do); their messages reach the caller.
type TokenFunc func(ctx context.Context, scope string) (*brokerv1.GetTokenResponse, error)

// Options configure a Server.
type Options struct {
	// Scopes, when not empty, are the only scopes callers may ask for
	// (as /.default scopes; see Scope). Empty means any: the TokenFunc
	// decides.
	Scopes []string
	// Timeout bounds writing a response, on top of the TokenFunc's own
	// bound. Zero means one minute.
	Timeout time.Duration
}

// Server is a running endpoint.
type Server struct {
	ln       net.Listener
	srv      *http.Server
	host     string // 127.0.0.1:PORT, the only Host accepted
	secret   string
	token    TokenFunc
	scopes   []string
	inFlight chan struct{}
}

// Listen opens the endpoint on 127.0.0.1 at a port the kernel picks, with
// a new random secret. Serve serves it.
func Listen(token TokenFunc, opts Options) (*Server, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("making the endpoint's secret: %w", err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening on 127.0.0.1: %w", err)
	}
	// Anyone on the host may connect before the header is checked: bound
	// the connections they can hold open.
	ln = netutil.LimitListener(ln, maxConns)
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	s := &Server{
		ln:       ln,
		host:     ln.Addr().String(),
		secret:   hex.EncodeToString(raw[:]),
		token:    token,
		scopes:   opts.Scopes,
		inFlight: make(chan struct{}, maxInFlight),
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readHeaderTimeout,
		WriteTimeout:      timeout + readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// net/http would log malformed requests to the program's
		// stderr, which belongs to the program run.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return s, nil
}

// URL is the endpoint's token URL, the value of IDENTITY_ENDPOINT.
func (s *Server) URL() string { return "http://" + s.host + Path }

// Secret is the value X-IDENTITY-HEADER must carry, the value of
// IDENTITY_HEADER. It is not a token and not a credential of the app.
func (s *Server) Secret() string { return s.secret }

// Serve serves until Close; it then returns nil.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the endpoint at once: the listener and every connection.
func (s *Server) Close() error { return s.srv.Close() }

// Scope is the /.default scope a managed-identity resource stands for:
// "https://graph.microsoft.com" and "https://graph.microsoft.com/" are
// "https://graph.microsoft.com/.default"; a scope already ending in
// /.default stays as it is.
func Scope(resource string) (string, error) {
	switch {
	case resource == "":
		return "", errors.New("resource is empty")
	case len(resource) > maxResourceLength:
		return "", fmt.Errorf("resource is %d bytes long; at most %d are accepted", len(resource), maxResourceLength)
	case strings.HasSuffix(resource, "/.default"):
		return resource, nil
	}
	r := strings.TrimSuffix(resource, "/")
	if r == "" {
		return "", fmt.Errorf("resource %q names no resource", resource)
	}
	return r + "/.default", nil
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// tokenBody is the JSON of a token answer, as App Service sends it.
type tokenBody struct {
	AccessToken string `json:"access_token"`
	ExpiresOn   string `json:"expires_on"`
	Resource    string `json:"resource"`
	TokenType   string `json:"token_type"`
	ClientID    string `json:"client_id,omitempty"`
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Host != s.host {
		writeError(w, http.StatusForbidden, "invalid_host",
			fmt.Sprintf("the Host header must be %s: this endpoint serves only requests made to it directly", s.host))
		return
	}
	if r.URL.Path != Path {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no such path; the token path is %s", Path))
		return
	}
	if r.Method != http.MethodGet {
		h.Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "only GET is served")
		return
	}
	got := r.Header.Values(HeaderName)
	switch {
	case len(got) == 0 || got[0] == "":
		writeError(w, http.StatusUnauthorized, "unauthorized", "the "+HeaderName+" header is missing: send the value of $IDENTITY_HEADER")
		return
	case len(got) > 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(s.secret)) != 1:
		writeError(w, http.StatusUnauthorized, "unauthorized", "the "+HeaderName+" header is wrong: send the value of $IDENTITY_HEADER")
		return
	}

	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "the query string is malformed")
		return
	}
	if v := q["api-version"]; len(v) != 1 || v[0] != APIVersion {
		writeError(w, http.StatusBadRequest, "invalid_request",
			fmt.Sprintf("api-version must be %s (the App Service managed-identity protocol)", APIVersion))
		return
	}
	for _, p := range identitySelectors {
		if q.Has(p) {
			writeError(w, http.StatusBadRequest, "invalid_request",
				fmt.Sprintf("%s selects a user-assigned identity, and this endpoint serves only its tenant's app: use the system-assigned identity (no client, object or resource id; unset AZURE_CLIENT_ID)", p))
			return
		}
	}
	res := q["resource"]
	if len(res) != 1 {
		writeError(w, http.StatusBadRequest, "invalid_request", "give exactly one resource parameter")
		return
	}
	resource := res[0]
	scope, err := Scope(resource)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if len(s.scopes) > 0 && !slices.Contains(s.scopes, scope) {
		writeError(w, http.StatusForbidden, "access_denied",
			fmt.Sprintf("scope %q is not among the scopes this endpoint serves (%s)", scope, strings.Join(s.scopes, ", ")))
		return
	}

	select {
	case s.inFlight <- struct{}{}:
		defer func() { <-s.inFlight }()
	default:
		writeError(w, http.StatusTooManyRequests, "too_many_requests",
			fmt.Sprintf("%d token requests are already waiting; retry shortly", maxInFlight))
		return
	}
	tok, err := s.token(r.Context(), scope)
	if err != nil {
		code, name, msg := fromError(err)
		writeError(w, code, name, msg)
		return
	}
	if tok.GetAccessToken() == "" || tok.GetExpiresAt() == nil {
		writeError(w, http.StatusInternalServerError, "internal", "brokerd answered without a token")
		return
	}
	writeJSON(w, http.StatusOK, tokenBody{
		AccessToken: tok.GetAccessToken(),
		ExpiresOn:   strconv.FormatInt(tok.GetExpiresAt().AsTime().Unix(), 10),
		Resource:    resource,
		TokenType:   "Bearer",
		ClientID:    ClientID(tok.GetAccessToken()),
	})
}

// fromError maps a TokenFunc error to the HTTP status, the error name and
// the description of the answer.
func fromError(err error) (int, string, string) {
	// Not status.FromError: for a wrapped status it returns the wrapper's
	// text as the message.
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return http.StatusInternalServerError, "internal", err.Error()
	}
	st := se.GRPCStatus()
	msg := fmt.Sprintf("brokerd: %v: %s", st.Code(), st.Message())
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.OutOfRange:
		return http.StatusBadRequest, "invalid_request", msg
	case codes.PermissionDenied, codes.Unauthenticated:
		return http.StatusForbidden, "access_denied", msg
	case codes.FailedPrecondition:
		return http.StatusForbidden, "failed_precondition", msg
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests, "too_many_requests", msg
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted:
		return http.StatusServiceUnavailable, "temporarily_unavailable", msg
	default:
		return http.StatusInternalServerError, "internal", msg
	}
}

func writeError(w http.ResponseWriter, code int, name, desc string) {
	writeJSON(w, code, errorBody{Error: name, ErrorDescription: desc})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // brokerd's messages quote `commands` and URLs with &
	_ = enc.Encode(v)
}
