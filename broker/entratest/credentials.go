package entratest

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// DefaultFederatedAudience is the audience Entra ID expects in a federated assertion unless the
// federated identity credential names another.
const DefaultFederatedAudience = "api://AzureADTokenExchange"

// FederatedCredential is a federated identity credential: the app trusts assertions that Issuer
// signs for Subject and Audience, as in workload identity federation. Issuer, Subject and
// Audience compare exactly, as at Entra ID.
type FederatedCredential struct {
	Issuer   string // the assertion's iss, e.g. "https://token.actions.githubusercontent.com"
	Subject  string // the assertion's sub, e.g. "system:serviceaccount:ns:name"
	Audience string // one of the assertion's aud values; "" = DefaultFederatedAudience
	// Keys verify the issuer's RS256 or PS256 signatures; each must be an *rsa.PublicKey. They
	// stand in for the issuer's JWKS, which Entra ID fetches; a kid in the assertion is ignored.
	Keys []crypto.PublicKey
}

// ClientAuth records how a granted token request authenticated its client.
type ClientAuth struct {
	ClientID string // as registered
	// Method is "secret", "certificate" or "federated".
	Method string
	// Thumbprint is the hex SHA-1 thumbprint (upper case, as the Azure portal shows it) of the
	// registered certificate that verified a "certificate" assertion.
	Thumbprint string
	// Alg is the assertion's signing algorithm ("RS256" or "PS256"), X5C whether its header
	// carried a certificate chain (MSAL's WithX5C), and Issuer, Subject and Audience its claims
	// (Audience is the one that matched).
	Alg                       string
	X5C                       bool
	Issuer, Subject, Audience string
	// Assertion is the client_assertion as received; empty for "secret".
	Assertion string
}

// Thumbprint returns a certificate's thumbprint as the Azure portal shows it: the hex SHA-1 of
// its DER encoding, in upper case.
func Thumbprint(cert *x509.Certificate) string {
	sum := sha1.Sum(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// appLocked returns the registered app for clientID, or a new one with no credentials.
func (s *Server) appLocked(clientID string) app {
	if a, ok := s.apps[strings.ToLower(clientID)]; ok {
		return a
	}
	return app{id: clientID}
}

// AddCertificate registers a certificate credential (its public part) on an app, registering the
// app (with no secret) if needed. An app may have several certificates besides a secret and
// federated credentials; adding one that is already there does nothing. The certificate's
// validity period is enforced: an assertion signed with it is refused before NotBefore and after
// NotAfter. It panics if cert is nil or its key is not RSA, the only kind Entra ID accepts.
func (s *Server) AddCertificate(clientID string, cert *x509.Certificate) {
	if cert == nil {
		panic("entratest: AddCertificate: nil certificate")
	}
	if _, ok := cert.PublicKey.(*rsa.PublicKey); !ok {
		panic(fmt.Sprintf("entratest: AddCertificate: the certificate's key is %T, not RSA", cert.PublicKey))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(clientID)
	if slices.ContainsFunc(a.certs, cert.Equal) {
		return
	}
	// Copy on write: validate reads the slice after unlocking.
	a.certs = append(slices.Clip(a.certs), cert)
	s.apps[strings.ToLower(clientID)] = a
}

// RemoveCertificate removes a certificate from an app and reports whether it was registered.
func (s *Server) RemoveCertificate(clientID string, cert *x509.Certificate) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.apps[strings.ToLower(clientID)]
	if !ok || !slices.ContainsFunc(a.certs, cert.Equal) {
		return false
	}
	a.certs = slices.DeleteFunc(slices.Clone(a.certs), cert.Equal)
	s.apps[strings.ToLower(clientID)] = a
	return true
}

// RemoveSecret removes an app's client secret, so that only its certificates and federated
// credentials authenticate it, as after rotating away from a secret. The app stays registered.
func (s *Server) RemoveSecret(clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.apps[strings.ToLower(clientID)]; ok {
		a.secret = ""
		s.apps[strings.ToLower(clientID)] = a
	}
}

// AddFederatedCredential adds a federated identity credential to an app, registering the app
// (with no secret) if needed. It panics if Issuer or Subject is empty, or if fc has no keys or a
// key that is not an *rsa.PublicKey.
func (s *Server) AddFederatedCredential(clientID string, fc FederatedCredential) {
	if fc.Issuer == "" || fc.Subject == "" {
		panic("entratest: AddFederatedCredential: empty Issuer or Subject")
	}
	if len(fc.Keys) == 0 {
		panic("entratest: AddFederatedCredential: no issuer keys")
	}
	for _, k := range fc.Keys {
		if _, ok := k.(*rsa.PublicKey); !ok {
			panic(fmt.Sprintf("entratest: AddFederatedCredential: key is %T, not *rsa.PublicKey", k))
		}
	}
	if fc.Audience == "" {
		fc.Audience = DefaultFederatedAudience
	}
	fc.Keys = slices.Clone(fc.Keys)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.appLocked(clientID)
	a.federated = append(slices.Clip(a.federated), fc)
	s.apps[strings.ToLower(clientID)] = a
}

// ClientAuths returns how each token request to a tenant (ID or domain) that was granted a
// token authenticated its client, oldest first. Refused requests (at client authentication or
// any other check) and requests answered by a Fault's Status are not in it.
func (s *Server) ClientAuths(tenant string) []ClientAuth {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.clientAuths[s.keyLocked(tenant)])
}

// Assertions returns every client_assertion received by any token endpoint, whatever the
// outcome, oldest first, so that leak tests can search logs and output for them.
func (s *Server) Assertions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.assertions)
}
