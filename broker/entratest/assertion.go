package entratest

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwtBearer is the only client_assertion_type Entra ID accepts.
const jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

const (
	// maxAssertion bounds a client_assertion; real ones (an x5c chain included) are a few KiB.
	maxAssertion = 64 << 10
	// nbfSkew is how far in the future an assertion's nbf may be, for clock skew.
	nbfSkew = 5 * time.Minute
	// quoteMax bounds a claim quoted back in an error message.
	quoteMax = 200
)

const (
	certDocs = "Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
	ficDocs  = "Please check your federated identity credential Subject, Audience and Issuer against the presented " +
		"assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
)

// assertionClaims are the claims of a client assertion that Entra ID checks.
type assertionClaims = jwt.RegisteredClaims

// parsedAssertion is a client assertion split and decoded, its signature not yet verified.
type parsedAssertion struct {
	raw    string
	tok    *jwt.Token
	claims *assertionClaims
	signed string // the signing input: header "." payload
	alg    string
}

// verifyAssertion authenticates app a with a client_assertion sent to the token endpoint of
// tenantID, as Entra ID does: an assertion issued by the app itself must be signed by one of
// its registered certificates, any other must match one of its federated identity credentials.
func (s *Server) verifyAssertion(r *http.Request, a app, tenantID, assertion string) (ClientAuth, *entraError) {
	p, e := parseAssertion(assertion)
	if e != nil {
		return ClientAuth{}, e
	}
	if strings.EqualFold(p.claims.Issuer, a.id) {
		return s.verifyCertificateAssertion(r, a, tenantID, p)
	}
	return verifyFederatedAssertion(a, p)
}

// parseAssertion decodes a compact JWS and checks that it is signed with RS256 or PS256.
func parseAssertion(assertion string) (*parsedAssertion, *entraError) {
	if len(assertion) > maxAssertion {
		return nil, malformed(fmt.Sprintf("The assertion is larger than %d bytes.", maxAssertion))
	}
	claims := &assertionClaims{}
	tok, parts, err := jwt.NewParser().ParseUnverified(assertion, claims)
	switch {
	case tok == nil || errors.Is(err, jwt.ErrTokenMalformed):
		return nil, malformed("The assertion is not a compact JWS with a JSON header and claims.")
	case err != nil || (tok.Method.Alg() != "RS256" && tok.Method.Alg() != "PS256"):
		alg, _ := tok.Header["alg"].(string)
		return nil, malformed(fmt.Sprintf("The signing algorithm '%s' is not supported; sign with RS256 or PS256.", quote(alg)))
	}
	return &parsedAssertion{raw: assertion, tok: tok, claims: claims, signed: parts[0] + "." + parts[1], alg: tok.Method.Alg()}, nil
}

// verifyCertificateAssertion checks an assertion the app signed with a certificate credential.
func (s *Server) verifyCertificateAssertion(r *http.Request, a app, tenantID string, p *parsedAssertion) (ClientAuth, *entraError) {
	c := p.claims
	if !strings.EqualFold(c.Subject, a.id) {
		return ClientAuth{}, &entraError{http.StatusUnauthorized, "invalid_client", 700021,
			"Client assertion application identifier doesn't match 'client_id' parameter. " + certDocs}
	}
	cert, thumb, e := findCertificate(a, p.tok.Header)
	if e != nil {
		return ClientAuth{}, e
	}
	found := fmt.Sprintf("Thumbprint of key used by client: '%s', Found key 'Start=%s, End=%s'",
		thumb, cert.NotBefore.UTC().Format("01/02/2006 15:04:05"), cert.NotAfter.UTC().Format("01/02/2006 15:04:05"))
	now := time.Now()
	switch {
	case now.After(cert.NotAfter):
		return ClientAuth{}, invalidSignature("Client assertion contains an invalid signature. [Reason - The key used is expired., " + found + "]")
	case now.Before(cert.NotBefore):
		return ClientAuth{}, invalidSignature("Client assertion contains an invalid signature. [Reason - The key used is not yet valid., " + found + "]")
	}
	x5c, e := matchX5C(p.tok.Header, cert, found)
	if e != nil {
		return ClientAuth{}, e
	}
	if p.tok.Method.Verify(p.signed, p.tok.Signature, cert.PublicKey) != nil {
		return ClientAuth{}, invalidSignature("Client assertion failed signature validation. [Reason - The provided signature " +
			"value did not match the expected signature value., " + found + "]")
	}
	if e := checkTimes(c, now); e != nil {
		return ClientAuth{}, e
	}
	if c.ID == "" {
		return ClientAuth{}, malformed("The assertion has no 'jti' claim.")
	}
	aud := slices.IndexFunc(c.Audience, func(aud string) bool { return s.isTokenEndpoint(r, tenantID, aud) })
	if aud < 0 {
		return ClientAuth{}, &entraError{http.StatusUnauthorized, "invalid_client", 700023,
			"Client assertion audience claim does not match Realm issuer. " + certDocs}
	}
	return ClientAuth{
		ClientID: a.id, Method: "certificate", Thumbprint: Thumbprint(cert), Alg: p.alg, X5C: x5c,
		Issuer: c.Issuer, Subject: c.Subject, Audience: c.Audience[aud], Assertion: p.raw,
	}, nil
}

// findCertificate returns the app's certificate that the x5t#S256 (preferred) or x5t header
// names, and that identifier in hex for messages. Like Entra ID it takes the thumbprint in
// base64url, as RFC 7515 says, or in standard base64, as MSAL sends it.
func findCertificate(a app, header map[string]any) (*x509.Certificate, string, *entraError) {
	name, size := "x5t#S256", sha256.Size
	if _, ok := header[name]; !ok {
		name, size = "x5t", sha1.Size
	}
	v, _ := header[name].(string)
	id, ok := decodeThumbprint(v, size)
	thumb := strings.ToUpper(hex.EncodeToString(id))
	if ok {
		for _, cert := range a.certs {
			var sum []byte
			if size == sha256.Size {
				s := sha256.Sum256(cert.Raw)
				sum = s[:]
			} else {
				s := sha1.Sum(cert.Raw)
				sum = s[:]
			}
			if bytes.Equal(sum, id) {
				return cert, thumb, nil
			}
		}
	}
	return nil, "", invalidSignature(fmt.Sprintf("The certificate with identifier used to sign the client assertion is not "+
		"registered on application. [Reason - The key was not found., Thumbprint of key used by client: '%s', Please "+
		"visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'. "+
		"Review the documentation at https://docs.microsoft.com/en-us/graph/deployments if not using the Global endpoint.]",
		thumb, a.id))
}

// decodeThumbprint decodes a base64url or standard base64 digest of size bytes, padded or not.
func decodeThumbprint(v string, size int) ([]byte, bool) {
	v = strings.TrimRight(v, "=")
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.RawStdEncoding} {
		if b, err := enc.DecodeString(v); err == nil && len(b) == size {
			return b, true
		}
	}
	return nil, false
}

// matchX5C reports whether the header carries an x5c chain and, if it does, checks that its
// first certificate is the one the thumbprint named.
func matchX5C(header map[string]any, cert *x509.Certificate, found string) (bool, *entraError) {
	v, ok := header["x5c"]
	if !ok {
		return false, nil
	}
	chain, _ := v.([]any)
	var leaf []byte
	if len(chain) > 0 {
		s, _ := chain[0].(string)
		leaf, _ = base64.StdEncoding.DecodeString(s)
	}
	if !bytes.Equal(leaf, cert.Raw) {
		return true, invalidSignature("Client assertion contains an invalid signature. [Reason - The first certificate " +
			"of the x5c header is not the one the thumbprint identifies., " + found + "]")
	}
	return true, nil
}

// verifyFederatedAssertion checks an assertion from an external issuer against the app's
// federated identity credentials.
func verifyFederatedAssertion(a app, p *parsedAssertion) (ClientAuth, *entraError) {
	c := p.claims
	if len(a.federated) == 0 {
		return ClientAuth{}, &entraError{http.StatusUnauthorized, "invalid_client", 70025,
			fmt.Sprintf("The client '%s' has no configured federated identity credentials.", a.id)}
	}
	var byIssuer []FederatedCredential
	for _, fc := range a.federated {
		if fc.Issuer == c.Issuer {
			byIssuer = append(byIssuer, fc)
		}
	}
	if len(byIssuer) == 0 {
		return ClientAuth{}, noFederatedMatch(700211, "issuer", c.Issuer)
	}
	verified := false
	for _, fc := range byIssuer {
		for _, k := range fc.Keys {
			verified = verified || p.tok.Method.Verify(p.signed, p.tok.Signature, k) == nil
		}
	}
	if !verified {
		return ClientAuth{}, invalidSignature("Client assertion failed signature validation. [Reason - The key was not " +
			"found among the issuer's signing keys.]")
	}
	if e := checkTimes(c, time.Now()); e != nil {
		return ClientAuth{}, e
	}
	var bySubject []FederatedCredential
	for _, fc := range byIssuer {
		if fc.Subject == c.Subject {
			bySubject = append(bySubject, fc)
		}
	}
	if len(bySubject) == 0 {
		return ClientAuth{}, noFederatedMatch(700213, "subject", c.Subject)
	}
	for _, fc := range bySubject {
		if slices.Contains(c.Audience, fc.Audience) {
			return ClientAuth{
				ClientID: a.id, Method: "federated", Alg: p.alg, X5C: p.tok.Header["x5c"] != nil,
				Issuer: c.Issuer, Subject: c.Subject, Audience: fc.Audience, Assertion: p.raw,
			}, nil
		}
	}
	return ClientAuth{}, noFederatedMatch(700212, "audience", strings.Join(c.Audience, ","))
}

// checkTimes requires exp in the future and nbf, if present, not beyond the clock skew.
func checkTimes(c *assertionClaims, now time.Time) *entraError {
	if c.ExpiresAt == nil {
		return malformed("The assertion has no 'exp' claim.")
	}
	if now.Before(c.ExpiresAt.Time) && (c.NotBefore == nil || !c.NotBefore.After(now.Add(nbfSkew))) {
		return nil
	}
	const layout = "2006-01-02T15:04:05.0000000Z"
	msg := "Client assertion is not within its valid time range. Current time: " + now.UTC().Format(layout)
	if c.NotBefore != nil {
		msg += ", assertion valid from " + c.NotBefore.UTC().Format(layout)
	}
	msg += ", expiry time of assertion " + c.ExpiresAt.UTC().Format(layout) + ". " + certDocs
	return &entraError{http.StatusUnauthorized, "invalid_client", 700024, msg}
}

// isTokenEndpoint reports whether aud is a token endpoint URL (v2 or v1) of the tenant the
// request is for, on this server, naming the tenant by ID or by one of its domains.
func (s *Server) isTokenEndpoint(r *http.Request, tenantID, aud string) bool {
	u, err := url.Parse(aud)
	if err != nil || u.Scheme != "https" || !strings.EqualFold(u.Host, r.Host) || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return false
	}
	name, rest, ok := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if !ok || (rest != "oauth2/v2.0/token" && rest != "oauth2/token") {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[strings.ToLower(name)]
	return t != nil && t.id == tenantID
}

func malformed(reason string) *entraError {
	return &entraError{http.StatusBadRequest, "invalid_request", 50027,
		"JWT token is invalid or malformed. [Reason - " + reason + "]"}
}

func invalidSignature(msg string) *entraError {
	return &entraError{http.StatusUnauthorized, "invalid_client", 700027, msg}
}

func noFederatedMatch(code int, what, value string) *entraError {
	return &entraError{http.StatusUnauthorized, "invalid_client", code, fmt.Sprintf(
		"No matching federated identity record found for presented assertion %s '%s'. %s", what, quote(value), ficDocs)}
}

// quote bounds a value taken from a request for an error message.
func quote(s string) string {
	if len(s) > quoteMax {
		s = s[:quoteMax] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
