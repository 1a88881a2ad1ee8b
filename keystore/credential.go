package keystore

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Kind is the kind of credential a stored value holds.
type Kind string

const (
	// KindSecret is a client secret.
	KindSecret Kind = "secret"
	// KindCertificate is a certificate with its private key.
	KindCertificate Kind = "certificate"
)

// MaxValueSize is the largest stored value, in bytes, any backend accepts:
// a certificate bundle (certificate, chain and key in PEM) is a few KB.
// Some OS keyrings take less; see Store.MaxSize.
const MaxValueSize = 16 << 10

// minRSABits is the smallest RSA key a certificate credential may have;
// Entra ID requires 2048 bits.
const minRSABits = 2048

// envelopeMarker starts every value brokerd writes, so that a value stored
// by other means (a bare secret, a PEM file) is told apart.
const envelopeMarker = `{"tokenbroker_credential":`

// Credential is an app's credential as a store keeps it.
//
// A store holds one of three forms, all read by Decode:
//   - what Encode writes (brokerctl credential set): a JSON object
//     {"tokenbroker_credential":1,"kind":...,"value":...,"set_at":...,
//     "expires_at":...};
//   - a PEM bundle: one or more CERTIFICATE blocks, the app's certificate
//     first, and one unencrypted private key (PRIVATE KEY or RSA PRIVATE
//     KEY), as a Kubernetes secret or a systemd credential would hold it;
//   - anything else: a bare client secret.
type Credential struct {
	Kind Kind
	// Value is the client secret, or a certificate's PEM bundle.
	Value Secret
	// SetAt is when brokerd stored it; zero when unknown.
	SetAt time.Time
	// Expires is when a client secret expires, as its owner said; zero when
	// unknown. A certificate's expiry is its own NotAfter.
	Expires time.Time
}

// envelope is the JSON form Encode writes.
type envelope struct {
	Version int       `json:"tokenbroker_credential"`
	Kind    Kind      `json:"kind"`
	Value   string    `json:"value"`
	SetAt   time.Time `json:"set_at,omitzero"`
	Expires time.Time `json:"expires_at,omitzero"`
}

// Encode returns c in the form brokerd stores it.
func (c Credential) Encode() Secret {
	b, err := json.Marshal(envelope{Version: 1, Kind: c.Kind, Value: c.Value.Reveal(), SetAt: c.SetAt.UTC(), Expires: c.Expires.UTC()})
	if err != nil {
		// Marshalling strings and times cannot fail.
		panic("keystore: encoding a credential: " + err.Error())
	}
	defer clear(b)
	return NewSecret(string(b))
}

// Decode reads a stored value in any of the forms Credential lists: a
// value that holds a PEM block anywhere (after "Bag Attributes" lines as
// openssl writes them, or a byte-order mark) is a certificate bundle, never
// a secret. A certificate is parsed to check it is usable. Errors match
// ErrInvalidSecret and never contain the value.
func Decode(v Secret) (Credential, error) {
	s := v.Reveal()
	switch {
	case s == "":
		return Credential{}, fmt.Errorf("%w: the stored value is empty", ErrInvalidSecret)
	case strings.HasPrefix(s, envelopeMarker):
		var e envelope
		d := json.NewDecoder(strings.NewReader(s))
		d.DisallowUnknownFields()
		if d.Decode(&e) != nil || d.InputOffset() != int64(len(strings.TrimRight(s, " \t\r\n"))) {
			// json's errors may quote pieces of the value.
			return Credential{}, fmt.Errorf("%w: the stored credential is not brokerd's stored form (a JSON object with version, kind and value, and nothing after it)", ErrInvalidSecret)
		}
		if e.Version != 1 {
			return Credential{}, fmt.Errorf("%w: the stored credential has version %d; this brokerd reads version 1", ErrInvalidSecret, e.Version)
		}
		c := Credential{Kind: e.Kind, Value: NewSecret(e.Value), SetAt: e.SetAt, Expires: e.Expires}
		switch e.Kind {
		case KindSecret:
			if e.Value == "" {
				return Credential{}, fmt.Errorf("%w: the stored client secret is empty", ErrInvalidSecret)
			}
			if err := CheckClientSecret(e.Value); err != nil {
				return Credential{}, err
			}
		case KindCertificate:
			if _, err := ParseCertificate([]byte(e.Value)); err != nil {
				return Credential{}, err
			}
		default:
			return Credential{}, fmt.Errorf("%w: the stored credential has unknown kind %+q", ErrInvalidSecret, e.Kind)
		}
		return c, nil
	case strings.Contains(s, pemMarker):
		if _, err := ParseCertificate([]byte(s)); err != nil {
			return Credential{}, err
		}
		return Credential{Kind: KindCertificate, Value: v}, nil
	}
	if err := CheckClientSecret(s); err != nil {
		return Credential{}, err
	}
	return Credential{Kind: KindSecret, Value: v}, nil
}

// pemMarker starts every PEM block.
const pemMarker = "-----BEGIN "

// CheckClientSecret refuses a value that cannot be a client secret: one
// of several lines, with control characters, or holding a PEM block (a
// private key must never be sent to Entra ID as a secret). Its errors match
// ErrInvalidSecret and never quote the value.
func CheckClientSecret(s string) error {
	switch {
	case strings.Contains(s, pemMarker):
		return fmt.Errorf("%w: the client secret holds a PEM block; a certificate is stored as one", ErrInvalidSecret)
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("%w: the client secret holds line breaks or other control characters", ErrInvalidSecret)
	}
	return nil
}

// Certificate is a parsed certificate credential.
type Certificate struct {
	// Chain is the app's certificate, then any chain sent with it.
	Chain []*x509.Certificate
	// Key is the certificate's private key.
	Key *rsa.PrivateKey
}

// ParseCertificate parses a PEM bundle: one or more CERTIFICATE blocks,
// the app's certificate first, and exactly one unencrypted RSA private key
// (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY") that belongs to it.
// It does not check the validity period; see Certificate.NotAfter. Errors
// match ErrInvalidSecret and never contain key material.
func ParseCertificate(b []byte) (*Certificate, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: certificate credential: %s", ErrInvalidSecret, fmt.Sprintf(format, a...))
	}
	if len(b) > MaxValueSize {
		return nil, bad("the bundle is %d bytes, more than the %d brokerd stores; leave out the chain", len(b), MaxValueSize)
	}
	var c Certificate
	keys := 0
	rest := bytes.TrimPrefix(b, []byte("\ufeff")) // a byte-order mark some editors write
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, bad("certificate %d does not parse: %v", len(c.Chain)+1, err)
			}
			c.Chain = append(c.Chain, cert)
		case "PRIVATE KEY", "RSA PRIVATE KEY":
			keys++
			if keys > 1 {
				return nil, bad("more than one private key")
			}
			if _, encrypted := blk.Headers["Proc-Type"]; encrypted {
				return nil, bad("the private key is encrypted; give it unencrypted (brokerctl decrypts a PKCS#12 file itself)")
			}
			k, err := parseRSAKey(blk)
			if err != nil {
				return nil, bad("%v", err)
			}
			c.Key = k
		case "ENCRYPTED PRIVATE KEY":
			return nil, bad("the private key is encrypted; give it unencrypted (brokerctl decrypts a PKCS#12 file itself)")
		case "EC PRIVATE KEY":
			return nil, bad("the private key is an EC key; Entra ID client assertions need an RSA key")
		default:
			return nil, bad("unexpected PEM block %+q; want CERTIFICATE and PRIVATE KEY blocks", blk.Type)
		}
	}
	if len(bytes.TrimSpace(rest)) != 0 && len(c.Chain)+keys > 0 {
		return nil, bad("trailing data after the last PEM block")
	}
	switch {
	case len(c.Chain) == 0:
		return nil, bad("no CERTIFICATE block")
	case c.Key == nil:
		return nil, bad("no private key (PRIVATE KEY or RSA PRIVATE KEY block)")
	}
	pub, ok := c.Chain[0].PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&c.Key.PublicKey) {
		return nil, bad("the private key does not belong to the first certificate (%s)", c.Chain[0].Subject)
	}
	if n := c.Key.N.BitLen(); n < minRSABits {
		return nil, bad("the RSA key has %d bits; Entra ID needs at least %d", n, minRSABits)
	}
	return &c, nil
}

func parseRSAKey(blk *pem.Block) (*rsa.PrivateKey, error) {
	if blk.Type == "RSA PRIVATE KEY" {
		k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
		if err != nil {
			return nil, errors.New("the RSA PRIVATE KEY block does not parse")
		}
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, errors.New("the PRIVATE KEY block does not parse")
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the private key is a %T; Entra ID client assertions need an RSA key", k)
	}
	return rk, nil
}

// PEM returns the bundle in brokerd's form: the certificates, then the key
// in PKCS#8.
func (c *Certificate) PEM() []byte {
	var b bytes.Buffer
	for _, cert := range c.Chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.Key)
	if err != nil {
		panic("keystore: encoding an RSA key: " + err.Error()) // cannot fail for an RSA key
	}
	_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	clear(der)
	return b.Bytes()
}

// NotAfter is when the app's certificate expires.
func (c *Certificate) NotAfter() time.Time { return c.Chain[0].NotAfter }

// ThumbprintSHA1 is the app's certificate's SHA-1 thumbprint in upper-case
// hex, as the Azure portal shows it.
func (c *Certificate) ThumbprintSHA1() string {
	s := sha1.Sum(c.Chain[0].Raw)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}

// ThumbprintSHA256 is the app's certificate's SHA-256 thumbprint in
// upper-case hex.
func (c *Certificate) ThumbprintSHA256() string {
	s := sha256.Sum256(c.Chain[0].Raw)
	return strings.ToUpper(hex.EncodeToString(s[:]))
}
