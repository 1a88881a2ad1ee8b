package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	"github.com/tokenbroker/tokenbroker/keystore"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// Keys are slow to make: every test shares these.
var testKeys = sync.OnceValue(func() (k struct{ a, b, small *rsa.PrivateKey }) {
	var err error
	for _, p := range []struct {
		key  **rsa.PrivateKey
		bits int
	}{{&k.a, 2048}, {&k.b, 2048}, {&k.small, 1024}} {
		if *p.key, err = rsa.GenerateKey(rand.Reader, p.bits); err != nil {
			panic(err)
		}
	}
	return k
})

// testCert is a certificate for key's public half, signed by signer (self
// when nil), valid from notBefore to notAfter.
func testCert(t *testing.T, cn string, key crypto.Signer, signer *x509.Certificate, signerKey crypto.Signer, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
	}
	if signer == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		signer, signerKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// validCert is a self-signed certificate for key, valid around testNow.
func validCert(t *testing.T, key crypto.Signer) *x509.Certificate {
	return testCert(t, "partner-app", key, nil, nil, testNow.Add(-24*time.Hour), testNow.Add(365*24*time.Hour))
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func pkcs1PEM(k *rsa.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}

func pkcs8PEM(t *testing.T, k any) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// setCert runs credential set --certificate with the given files and stdin
// against a FakeBroker, and returns the result and the certificate brokerd
// received (nil when none).
func setCert(t *testing.T, stdin string, args ...string) (result, *keystore.Certificate) {
	t.Helper()
	b := &brokertest.FakeBroker{SetResp: &brokerv1.SetCredentialResponse{VerifiedWithTenant: "contoso"}}
	r := runCLI(t, stdin, append([]string{"--socket", brokertest.Serve(t, b), "credential", "set", "--app", "partner"}, args...)...)
	reqs := b.SetRequests()
	if len(reqs) == 0 {
		return r, nil
	}
	if len(reqs) > 1 || reqs[0].GetCertificatePem() == nil || reqs[0].GetClientSecret() != "" {
		t.Fatalf("brokerd received %d requests, the first %v; want one with certificate_pem", len(reqs), reqs[0])
	}
	got, err := keystore.ParseCertificate(reqs[0].GetCertificatePem())
	if err != nil {
		t.Fatalf("brokerd received a certificate_pem keystore cannot parse: %v", err)
	}
	// It is in brokerd's form: certificates, then one PKCS#8 key.
	if !bytes.Equal(reqs[0].GetCertificatePem(), got.PEM()) {
		t.Errorf("certificate_pem is not in keystore.Certificate.PEM form:\n%s", reqs[0].GetCertificatePem())
	}
	return r, got
}

// wantStored checks a successful set of cert with key, and its report.
func wantStored(t *testing.T, r result, got *keystore.Certificate, cert *x509.Certificate, key *rsa.PrivateKey) {
	t.Helper()
	if r.code != 0 || got == nil {
		t.Fatalf("credential set = %+v, want success", r)
	}
	if !got.Chain[0].Equal(cert) || !got.Key.Equal(key) {
		t.Errorf("brokerd received certificate %s, want %s with its key", got.Chain[0].Subject, cert.Subject)
	}
	want := "credential for app partner stored (verified with tenant contoso)\n" +
		"  kind:        certificate\n" +
		"  subject:     CN=" + cert.Subject.CommonName + "\n" +
		"  thumbprint:  " + got.ThumbprintSHA1() + " (SHA-1, as the Azure portal shows it)\n" +
		"  expires:     " + cert.NotAfter.UTC().Format("2006-01-02 15:04:05") + " UTC (365 days left)\n"
	if r.stdout != want || r.stderr != "" {
		t.Errorf("stdout:\n%s\nstderr: %q\nwant stdout:\n%s", r.stdout, r.stderr, want)
	}
	if strings.Contains(r.stdout+r.stderr, "PRIVATE KEY") {
		t.Errorf("the output shows the key")
	}
}

func TestCredentialSetCertificatePEM(t *testing.T) {
	k := testKeys()
	cert := validCert(t, k.a)

	t.Run("key first, PKCS#1", func(t *testing.T) {
		f := writeFile(t, "partner.pem", append(pkcs1PEM(k.a), certPEM(cert)...))
		r, got := setCert(t, "", "--certificate", f)
		wantStored(t, r, got, cert, k.a)
	})
	t.Run("openssl pkcs12 -nodes output, PKCS#8", func(t *testing.T) {
		data := "Bag Attributes\n    localKeyID: 01 00 00 00\nsubject=CN=partner-app\n" + string(certPEM(cert)) +
			"Bag Attributes\n    localKeyID: 01 00 00 00\nKey Attributes: <No Attributes>\n" + string(pkcs8PEM(t, k.a))
		r, got := setCert(t, "", "--certificate", writeFile(t, "partner.pem", []byte(data)))
		wantStored(t, r, got, cert, k.a)
	})
	t.Run("chain before the certificate", func(t *testing.T) {
		ca := testCert(t, "issuing-ca", k.b, nil, nil, testNow.Add(-48*time.Hour), testNow.Add(1000*24*time.Hour))
		leaf := testCert(t, "partner-app", k.a, ca, k.b, testNow.Add(-24*time.Hour), testNow.Add(365*24*time.Hour))
		f := writeFile(t, "chain.pem", bytes.Join([][]byte{certPEM(ca), pkcs8PEM(t, k.a), certPEM(leaf)}, nil))
		r, got := setCert(t, "", "--certificate", f)
		wantStored(t, r, got, leaf, k.a)
		if len(got.Chain) != 2 || !got.Chain[1].Equal(ca) {
			t.Errorf("chain sent: %d certificates, want the leaf then the CA", len(got.Chain))
		}
	})
	t.Run("--key in a file of its own", func(t *testing.T) {
		r, got := setCert(t, "", "--certificate", writeFile(t, "cert.pem", certPEM(cert)),
			"--key", writeFile(t, "key.pem", pkcs8PEM(t, k.a)))
		wantStored(t, r, got, cert, k.a)
	})
	t.Run("stdin", func(t *testing.T) {
		r, got := setCert(t, string(certPEM(cert))+string(pkcs1PEM(k.a)), "--certificate", "-")
		wantStored(t, r, got, cert, k.a)
	})
}

func TestCredentialSetCertificatePFX(t *testing.T) {
	k := testKeys()
	cert := validCert(t, k.a)
	const password = "pfx-Pa55word!"
	encode := func(enc *pkcs12.Encoder, pw string) []byte {
		data, err := enc.Encode(k.a, cert, nil, pw)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name  string
		data  []byte
		stdin string
	}{
		{"modern (AES, PBES2), password on stdin", encode(pkcs12.Modern, password), password + "\n"},
		{"modern 2026, password on stdin with CRLF", encode(pkcs12.Modern2026, password), password + "\r\n"},
		{"legacy (3DES), password on stdin", encode(pkcs12.Legacy, password), password},
		{"legacy RC2, password on stdin", encode(pkcs12.LegacyRC2, password), password + "\n"},
		{"empty password, nothing on stdin", encode(pkcs12.Modern, ""), ""},
		{"passwordless, nothing on stdin", encode(pkcs12.Passwordless, ""), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A .bin name: the content decides, not the extension.
			r, got := setCert(t, tt.stdin, "--certificate", writeFile(t, "partner.bin", tt.data))
			wantStored(t, r, got, cert, k.a)
			assertNoSecret(t, r, password)
		})
	}
}

// Every file brokerd must not get is refused before anything is sent, with
// a one-line message naming the file and the fix, and no key material or
// password in the output.
func TestCredentialSetCertificateRefused(t *testing.T) {
	k := testKeys()
	cert := validCert(t, k.a)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecCert := validCert(t, ec)
	const password = "right-Pa55word"
	pfx, err := pkcs12.Modern.Encode(k.a, cert, nil, password)
	if err != nil {
		t.Fatal(err)
	}
	ecPFX, err := pkcs12.Modern.Encode(ec, ecCert, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	expired := testCert(t, "old-app", k.a, nil, nil, testNow.Add(-400*24*time.Hour), testNow.Add(-time.Hour))
	future := testCert(t, "new-app", k.a, nil, nil, testNow.Add(48*time.Hour), testNow.Add(400*24*time.Hour))
	small := validCert(t, k.small)
	// The deprecated legacy PEM encryption: what is to be refused.
	legacyEnc, err := x509.EncryptPEMBlock(rand.Reader, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k.a), []byte("pw"), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8Enc := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0x03, 0x02, 0x01, 0x00}})
	// A chain brokerd could not store: the certificate, then 14 others.
	longChain := certPEM(cert)
	for range 14 {
		longChain = append(longChain, certPEM(testCert(t, strings.Repeat("ca", 100), k.b, nil, nil, testNow.Add(-time.Hour), testNow.Add(time.Hour)))...)
	}
	longChain = append(longChain, pkcs1PEM(k.a)...)
	big := append(certPEM(cert), bytes.Repeat([]byte("# padding\n"), 7000)...)
	big = append(big, pkcs1PEM(k.a)...)

	tests := []struct {
		name  string
		file  []byte
		stdin string
		extra []string
		want  string // the whole of stderr after "brokerctl: FILE"
	}{
		{"wrong PKCS#12 password", pfx, "wrong-Pa55word\n", nil,
			"wrong password for the PKCS#12 file FILE"},
		{"PKCS#12 password missing", pfx, "", nil,
			"the PKCS#12 file FILE is protected by a password: run on a terminal to be prompted for it, or pipe it into stdin"},
		{"encrypted PKCS#8 PEM key", append(certPEM(cert), pkcs8Enc...), "", nil,
			"the private key in FILE is encrypted: decrypt it with `openssl pkey -in FILE -out key.pem`"},
		{"encrypted legacy PEM key", append(certPEM(cert), pem.EncodeToMemory(legacyEnc)...), "", nil,
			"the private key in FILE is encrypted: decrypt it with `openssl pkey -in FILE -out key.pem`"},
		{"EC key in PEM", append(certPEM(ecCert), pkcs8PEM(t, ec)...), "", nil,
			"the private key in FILE is an ECDSA key; Entra ID certificate credentials need an RSA key of at least 2048 bits"},
		{"EC key in PKCS#12", ecPFX, "", nil,
			"the private key in FILE is an ECDSA key; Entra ID certificate credentials need an RSA key of at least 2048 bits"},
		{"key of another certificate", append(certPEM(cert), pkcs1PEM(k.b)...), "", nil,
			"FILE: the private key does not belong to the first certificate (CN=partner-app)"},
		{"RSA key of 1024 bits", append(certPEM(small), pkcs1PEM(k.small)...), "", nil,
			"FILE: the RSA key has 1024 bits; Entra ID needs at least 2048"},
		{"no key", certPEM(cert), "", nil,
			"FILE: no private key (PRIVATE KEY or RSA PRIVATE KEY block)"},
		{"DER certificate alone", cert.Raw, "", nil,
			"FILE holds a certificate without its private key: give a PEM file with both, or a PKCS#12 (.pfx) file"},
		{"expired", append(certPEM(expired), pkcs1PEM(k.a)...), "", nil,
			"the certificate in FILE (CN=old-app) expired on " + expired.NotAfter.UTC().Format(time.RFC3339) + " (notAfter): make a new one, upload it to the app registration, and set that"},
		{"not yet valid", append(certPEM(future), pkcs1PEM(k.a)...), "", nil,
			"the certificate in FILE (CN=new-app) is not valid before " + future.NotBefore.UTC().Format(time.RFC3339) + " (notBefore): set it from then on, or check this host's clock"},
		{"too large", big, "", nil,
			"FILE is larger than 64 KiB: give the certificate, its chain and its private key only"},
		{"a chain brokerd cannot store", longChain, "", nil,
			"FILE: the bundle is "}, // its size varies with the serial numbers
		{"not a certificate", []byte("just some text\n"), "", nil,
			"FILE is neither PEM (-----BEGIN CERTIFICATE-----) nor PKCS#12 (.pfx, .p12)"},
		{"empty", nil, "", nil, "FILE is empty"},
		{"--key with a PKCS#12 file", pfx, "", []string{"--key", "/dev/null"},
			"--key goes with a PEM certificate; FILE is not PEM (a PKCS#12 file holds its key itself)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeFile(t, "cred.file", tt.file)
			r, got := setCert(t, tt.stdin, append([]string{"--certificate", f}, tt.extra...)...)
			if got != nil {
				t.Fatalf("brokerd received the certificate; result %+v", r)
			}
			want := "brokerctl: " + strings.ReplaceAll(tt.want, "FILE", f)
			first, _, _ := strings.Cut(r.stderr, "\n")
			if r.code != exitUsage || !strings.HasPrefix(first, want) || r.stdout != "" {
				t.Errorf("got %+v\nwant exit 2 and stderr starting %q", r, want)
			}
			for _, s := range []string{password, "wrong-Pa55word", "PRIVATE KEY-----"} {
				if strings.Contains(r.stderr, s) {
					t.Errorf("stderr contains %q: %s", s, r.stderr)
				}
			}
		})
	}
}

func TestCredentialSetCertificateFileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.pem")
	r, got := setCert(t, "", "--certificate", missing)
	if want := "brokerctl: reading the certificate: open " + missing + ": no such file or directory\n"; got != nil || r.code != exitUsage || r.stderr != want {
		t.Errorf("missing file: %+v, want exit 2 and %q", r, want)
	}
	// A FIFO (or a device) is refused at once, not waited on.
	fifo := filepath.Join(t.TempDir(), "cert.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	r, got = setCert(t, "", "--certificate", fifo)
	if want := "brokerctl: " + fifo + " is not a regular file; give the certificate file, or - for stdin\n"; got != nil || r.code != exitUsage || r.stderr != want {
		t.Errorf("a FIFO: %+v, want exit 2 and %q", r, want)
	}
	// PKCS#12 with a password on stdin: stdin cannot carry the password too.
	k := testKeys()
	pfx, err := pkcs12.Modern.Encode(k.a, validCert(t, k.a), nil, "pw")
	if err != nil {
		t.Fatal(err)
	}
	r, got = setCert(t, string(pfx), "--certificate", "-")
	if want := "brokerctl: the PKCS#12 data on stdin is protected by a password, and stdin cannot carry both: give the file's path to --certificate\n"; got != nil || r.code != exitUsage || r.stderr != want {
		t.Errorf("password-protected PKCS#12 on stdin: %+v, want exit 2 and %q", r, want)
	}
}

// A certificate's subject is the issuer's to choose: a terminal escape in
// it is printed escaped, never sent to the terminal.
func TestCredentialSetCertificateSubjectEscaped(t *testing.T) {
	k := testKeys()
	evil := testCert(t, "app\x1b]0;pwned\x07\x1b[2J", k.a, nil, nil, testNow.Add(-time.Hour), testNow.Add(30*24*time.Hour))
	f := writeFile(t, "evil.pem", append(certPEM(evil), pkcs1PEM(k.a)...))
	r, got := setCert(t, "", "--certificate", f)
	if got == nil || r.code != 0 {
		t.Fatalf("%+v", r)
	}
	if strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07") || !strings.Contains(r.stdout, `CN=app\x1b]0\;pwned\a\x1b[2J`) {
		t.Errorf("the subject is not printed escaped:\n%q\n%q", r.stdout, r.stderr)
	}
}
