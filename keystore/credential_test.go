package keystore_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/keystore"
)

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaKey2 *rsa.PrivateKey
)

// keys returns two RSA keys made once per test binary (keygen is slow
// under the race detector).
func keys(t *testing.T) (*rsa.PrivateKey, *rsa.PrivateKey) {
	t.Helper()
	rsaOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
	})
	return rsaKey, rsaKey2
}

func certDER(t *testing.T, pub any, signer any, cn string) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemOf(typ string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}))
}

func TestParseCertificate(t *testing.T) {
	k1, k2 := keys(t)
	leaf := pemOf("CERTIFICATE", certDER(t, &k1.PublicKey, k1, "app"))
	other := pemOf("CERTIFICATE", certDER(t, &k2.PublicKey, k2, "other"))
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(k1)
	key8 := pemOf("PRIVATE KEY", pkcs8)
	key1 := pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k1))
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalECPrivateKey(ec)

	for _, ok := range []string{leaf + key8, key8 + leaf, leaf + key1, leaf + other + key8} {
		c, err := keystore.ParseCertificate([]byte(ok))
		if err != nil {
			t.Fatalf("ParseCertificate: %v", err)
		}
		if c.Chain[0].Subject.CommonName != "app" || !c.Key.Equal(k1) {
			t.Fatalf("parsed the wrong certificate or key")
		}
		if len(c.ThumbprintSHA1()) != 40 || len(c.ThumbprintSHA256()) != 64 || strings.ToUpper(c.ThumbprintSHA1()) != c.ThumbprintSHA1() {
			t.Errorf("thumbprints %q %q", c.ThumbprintSHA1(), c.ThumbprintSHA256())
		}
		// PEM is the normal form, and parses to the same.
		again, err := keystore.ParseCertificate(c.PEM())
		if err != nil || again.ThumbprintSHA1() != c.ThumbprintSHA1() || !again.Key.Equal(c.Key) || len(again.Chain) != len(c.Chain) {
			t.Fatalf("PEM does not round-trip: %v", err)
		}
	}

	secretKeyText := strings.Split(key8, "\n")[1]
	for _, tc := range []struct{ name, in, want string }{
		{"no certificate", key8, "no CERTIFICATE"},
		{"no key", leaf, "no private key"},
		{"wrong key", other + key8, "does not belong to the first certificate"},
		{"two keys", leaf + key8 + key1, "more than one private key"},
		{"EC key", leaf + pemOf("EC PRIVATE KEY", ecDER), "RSA"},
		{"encrypted", leaf + pemOf("ENCRYPTED PRIVATE KEY", []byte("x")), "encrypted"},
		{"garbage block", leaf + key8 + pemOf("CERTIFICATE", []byte("nope")), "does not parse"},
		{"other block", leaf + key8 + pemOf("PUBLIC KEY", []byte("x")), "unexpected PEM block"},
		{"not PEM", "just a secret", "no CERTIFICATE"},
		{"too large", leaf + key8 + strings.Repeat("x", keystore.MaxValueSize), "more than"},
	} {
		_, err := keystore.ParseCertificate([]byte(tc.in))
		if !errors.Is(err, keystore.ErrInvalidSecret) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrInvalidSecret with %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), secretKeyText) {
			t.Errorf("%s: the error contains key material", tc.name)
		}
	}
}

func TestCredentialEncodeDecode(t *testing.T) {
	k1, _ := keys(t)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(k1)
	bundle := pemOf("CERTIFICATE", certDER(t, &k1.PublicKey, k1, "app")) + pemOf("PRIVATE KEY", pkcs8)
	set := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	exp := set.Add(365 * 24 * time.Hour)

	for _, c := range []keystore.Credential{
		{Kind: keystore.KindSecret, Value: keystore.NewSecret("s3cr3t~value"), SetAt: set, Expires: exp},
		{Kind: keystore.KindSecret, Value: keystore.NewSecret("s3cr3t~value")},
		{Kind: keystore.KindCertificate, Value: keystore.NewSecret(bundle), SetAt: set},
	} {
		got, err := keystore.Decode(c.Encode())
		if err != nil {
			t.Fatalf("Decode(Encode(%s)): %v", c.Kind, err)
		}
		if got.Kind != c.Kind || got.Value.Reveal() != c.Value.Reveal() || !got.SetAt.Equal(c.SetAt) || !got.Expires.Equal(c.Expires) {
			t.Errorf("round trip of a %s: got %s set %v expires %v", c.Kind, got.Kind, got.SetAt, got.Expires)
		}
	}

	// Values stored by other means.
	if c, err := keystore.Decode(keystore.NewSecret("bare~secret")); err != nil || c.Kind != keystore.KindSecret || c.Value.Reveal() != "bare~secret" || !c.SetAt.IsZero() {
		t.Errorf("a bare secret: %+v, %v", c, err)
	}
	if c, err := keystore.Decode(keystore.NewSecret("\n" + bundle)); err != nil || c.Kind != keystore.KindCertificate {
		t.Errorf("a PEM bundle: kind %s, %v", c.Kind, err)
	}
	if _, err := keystore.Decode(keystore.NewSecret("-----BEGIN CERTIFICATE-----\nbroken")); !errors.Is(err, keystore.ErrInvalidSecret) {
		t.Errorf("a broken PEM bundle: %v", err)
	}
	// What `openssl pkcs12 -nodes` writes (attributes before each block),
	// and a file saved with a byte-order mark, are certificates: a key is
	// never taken for a client secret.
	bagged := strings.ReplaceAll(bundle, "-----BEGIN", "Bag Attributes\n    localKeyID: 01 00 00 00 \nsubject=/CN=app\n-----BEGIN")
	for name, v := range map[string]string{"openssl's bag attributes": bagged, "a byte-order mark": "\ufeff" + bundle} {
		if c, err := keystore.Decode(keystore.NewSecret(v)); err != nil || c.Kind != keystore.KindCertificate {
			t.Errorf("%s: kind %q, %v", name, c.Kind, err)
		}
	}
	for name, v := range map[string]string{
		"a secret of two lines":  "canary-value\nsecond-line",
		"a secret with a key":    "canary-value -----BEGIN PRIVATE KEY----- x",
		"a secret with a escape": "canary-value\x1b[2J",
	} {
		_, err := keystore.Decode(keystore.NewSecret(v))
		if !errors.Is(err, keystore.ErrInvalidSecret) || strings.Contains(err.Error(), "canary-value") {
			t.Errorf("%s: %v, want ErrInvalidSecret without the value", name, err)
		}
	}

	// Envelopes that are not right, without quoting what is in them.
	for _, bad := range []string{
		`{"tokenbroker_credential":1,"kind":"secret","value":""}`,
		`{"tokenbroker_credential":2,"kind":"secret","value":"canary-value"}`,
		`{"tokenbroker_credential":1,"kind":"password","value":"canary-value"}`,
		`{"tokenbroker_credential":1,"kind":"secret","value":"canary-value","extra":1}`,
		`{"tokenbroker_credential":1,"kind":"certificate","value":"canary-value"}`,
		`{"tokenbroker_credential":1,"kind":"secret","value":"canary-value"`,
		`{"tokenbroker_credential":1,"kind":"secret","value":"canary-value"}canary-value`,
		`{"tokenbroker_credential":1,"kind":"secret","value":"canary-value","canary-value":1}`,
		`{"tokenbroker_credential":1,"kind":"secret","value":"canary-value\nline"}`,
	} {
		_, err := keystore.Decode(keystore.NewSecret(bad))
		if !errors.Is(err, keystore.ErrInvalidSecret) {
			t.Errorf("Decode(%s) = %v, want ErrInvalidSecret", bad, err)
		} else if strings.Contains(err.Error(), "canary-value") {
			t.Errorf("Decode error quotes the value: %v", err)
		}
	}
	if _, err := keystore.Decode(keystore.Secret{}); !errors.Is(err, keystore.ErrInvalidSecret) {
		t.Errorf("empty value: %v", err)
	}
}
