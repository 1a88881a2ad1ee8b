package entratest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// certificateKey is the one RSA key of every certificate NewCertificate makes, generated once
// per process: RSA key generation is slow under the race detector.
var certificateKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

// NewCertificate makes a self-signed certificate for a client certificate credential, as
// `openssl req -x509` or the Azure portal guidance makes one, valid from notBefore to notAfter
// (either may be in the past, for expired or not-yet-valid certificates), with the subject
// CN=commonName. It returns the certificate, its private key, and both in PEM ("CERTIFICATE"
// then PKCS#8 "PRIVATE KEY"), the form confidential.CertFromPEM reads.
//
// Every certificate made in a process shares one 2048-bit RSA key (generated on first use), so
// that making many is cheap; certificates still differ in serial number and so in thumbprint.
// A test that needs a certificate with a key of its own signs one with x509.CreateCertificate.
func NewCertificate(commonName string, notBefore, notAfter time.Time) (*x509.Certificate, *rsa.PrivateKey, []byte, error) {
	key, err := certificateKey()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("entratest: generating the certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("entratest: generating a certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("entratest: creating a certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("entratest: parsing the new certificate: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("entratest: encoding the certificate key: %w", err)
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})...)
	return cert, key, pemData, nil
}

// Issuer is an external OpenID issuer for workload identity federation (a Kubernetes cluster,
// GitHub Actions, SPIFFE): it signs RS256 JWTs that a FederatedCredential naming it accepts.
// It is safe for concurrent use.
type Issuer struct {
	iss string
	key *rsa.PrivateKey
	kid string
}

// NewIssuer makes an issuer named iss (the iss claim of what it signs), with a fresh 2048-bit
// RSA key of its own. An empty iss names it "https://issuer.entratest.invalid/<random>".
func NewIssuer(iss string) (*Issuer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("entratest: generating an issuer key: %w", err)
	}
	if iss == "" {
		iss = "https://issuer.entratest.invalid/" + rand.Text()
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("entratest: encoding an issuer key: %w", err)
	}
	sum := sha256.Sum256(pub)
	return &Issuer{iss: iss, key: key, kid: base64.RawURLEncoding.EncodeToString(sum[:20])}, nil
}

// Issuer returns the issuer's name, its iss claim.
func (i *Issuer) Issuer() string { return i.iss }

// PublicKey returns the key that verifies the issuer's signatures.
func (i *Issuer) PublicKey() *rsa.PublicKey { return &i.key.PublicKey }

// Credential returns the federated identity credential that trusts this issuer for subject
// with the default audience (DefaultFederatedAudience).
func (i *Issuer) Credential(subject string) FederatedCredential {
	return FederatedCredential{Issuer: i.iss, Subject: subject, Audience: DefaultFederatedAudience, Keys: []crypto.PublicKey{i.PublicKey()}}
}

// Sign returns an assertion for subject and audience valid from now for lifetime: iss, sub, aud,
// iat = nbf = now, exp = now + lifetime (a negative lifetime makes an expired one), and a random
// jti, as a Kubernetes projected service-account token or a GitHub Actions OIDC token has.
func (i *Issuer) Sign(subject, audience string, lifetime time.Duration) string {
	now := time.Now()
	return i.SignClaims(map[string]any{
		"iss": i.iss, "sub": subject, "aud": audience,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(lifetime).Unix(), "jti": rand.Text(),
	})
}

// SignClaims returns exactly claims signed by the issuer's key with RS256, with the issuer's kid
// in the header, for tests that need an unusual assertion (another iss, no exp, ...).
func (i *Issuer) SignClaims(claims map[string]any) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims(claims))
	tok.Header["kid"] = i.kid
	signed, err := tok.SignedString(i.key)
	if err != nil {
		panic(fmt.Sprintf("entratest: signing an assertion: %v", err)) // only unencodable claims get here
	}
	return signed
}
