package main

import (
	"bufio"
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenbroker/tokenbroker/keystore"
)

// maxBundleBytes bounds the certificate bundle brokerctl sends: brokerd
// stores at most 16 KiB, in a form a little larger than the bundle.
const maxBundleBytes = 15 << 10

// clockSkew is how far in the future a certificate's notBefore may be, as
// brokerd and Entra ID allow for clocks that differ by a few minutes.
const clockSkew = 5 * time.Minute

// pfxDecodeLimit bounds the decoding of a PKCS#12 file: its key derivation
// runs as many rounds as the file says, and a hostile file may say two
// billion.
const pfxDecodeLimit = 15 * time.Second

// maxCertFileBytes bounds a certificate or key file `credential set` reads:
// a certificate, its chain and its key take a few KiB.
const maxCertFileBytes = 64 << 10

// maxPasswordBytes bounds the PKCS#12 password line read from stdin.
const maxPasswordBytes = 4 << 10

// stdinName is the file name that means stdin.
const stdinName = "-"

// certSource is where `credential set --certificate` reads from.
type certSource struct {
	certFile string // --certificate: PEM or PKCS#12; "-" is stdin
	keyFile  string // --key: a PEM private key, when not in certFile
}

// readCertificate reads the certificate credential of src as the invoking
// user, converts it to a keystore.Certificate and checks it is one Entra ID
// takes and valid at now. A PKCS#12 file's password, when it has one, is
// asked for at a no-echo prompt on a terminal, else read as the first line
// of stdin. No error contains key material or the password.
func (c *cli) readCertificate(src certSource, now time.Time) (*keystore.Certificate, error) {
	data, err := c.readCertFile(src.certFile)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	name := displayName(src.certFile)

	var cert *keystore.Certificate
	switch {
	case bytes.Contains(data, []byte("-----BEGIN ")):
		if src.keyFile != "" {
			key, err := c.readCertFile(src.keyFile)
			if err != nil {
				return nil, err
			}
			defer clear(key)
			if !bytes.Contains(key, []byte("-----BEGIN ")) {
				return nil, inputError(fmt.Errorf("%s is not a PEM file: --key takes a PEM private key (-----BEGIN PRIVATE KEY-----)", displayName(src.keyFile)))
			}
			joined := make([]byte, 0, len(data)+1+len(key))
			joined = append(append(append(joined, data...), '\n'), key...)
			defer clear(joined)
			data = joined
			name += " and " + displayName(src.keyFile)
		}
		keyFile := src.certFile
		if src.keyFile != "" {
			keyFile = src.keyFile
		}
		cert, err = parsePEMCertificate(name, keyFile, data)
	case src.keyFile != "":
		return nil, flagError("--key goes with a PEM certificate; %s is not PEM (a PKCS#12 file holds its key itself)", name)
	case len(data) > 0 && data[0] == 0x30: // an ASN.1 SEQUENCE: DER
		cert, err = c.decodePFX(src.certFile, data)
	default:
		return nil, inputError(fmt.Errorf("%s is neither PEM (-----BEGIN CERTIFICATE-----) nor PKCS#12 (.pfx, .p12)", name))
	}
	if err != nil {
		return nil, err
	}
	if err := checkValidity(name, cert.Chain[0], now); err != nil {
		return nil, err
	}
	if n := len(cert.PEM()); n > maxBundleBytes {
		return nil, inputError(fmt.Errorf("the certificate in %s comes with a chain of %d certificates, %d bytes in all; brokerd stores at most %d: "+
			"give the certificate without its chain (Entra ID needs only the certificate registered on the app)", name, len(cert.Chain), n, maxBundleBytes))
	}
	return cert, nil
}

// readCertFile reads a regular file of at most maxCertFileBytes, or stdin
// for "-". A FIFO or a device is refused rather than waited on.
func (c *cli) readCertFile(file string) ([]byte, error) {
	var r io.Reader = c.stdin
	if file != stdinName {
		f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NOCTTY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, inputError(fmt.Errorf("reading the certificate: %w", err))
		}
		defer f.Close()
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			return nil, inputError(fmt.Errorf("%s is not a regular file; give the certificate file, or - for stdin", displayName(file)))
		}
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxCertFileBytes+1))
	if err != nil {
		clear(data)
		return nil, inputError(fmt.Errorf("reading %s: %v", displayName(file), unwrapPath(err)))
	}
	if len(data) > maxCertFileBytes {
		clear(data)
		return nil, inputError(fmt.Errorf("%s is larger than %d KiB: give the certificate, its chain and its private key only", displayName(file), maxCertFileBytes>>10))
	}
	if len(data) == 0 {
		return nil, inputError(fmt.Errorf("%s is empty", displayName(file)))
	}
	return data, nil
}

// parsePEMCertificate parses a PEM bundle whose certificates and key come in
// any order: the certificate the key belongs to is put first. keyFile is
// the file the key is expected in, for the fix of an encrypted key.
func parsePEMCertificate(name, keyFile string, data []byte) (*keystore.Certificate, error) {
	var certs, others []*pem.Block
	var pub *rsa.PublicKey
	for rest := data; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			certs = append(certs, blk)
			continue
		case "ENCRYPTED PRIVATE KEY":
			return nil, encryptedKeyError(name, keyFile)
		case "EC PRIVATE KEY":
			return nil, notRSAError(name, "an EC")
		case "RSA PRIVATE KEY":
			if _, ok := blk.Headers["Proc-Type"]; ok {
				return nil, encryptedKeyError(name, keyFile)
			}
			if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
				pub = &k.PublicKey
			}
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			switch k := k.(type) {
			case *rsa.PrivateKey:
				pub = &k.PublicKey
			case nil:
				_ = err // keystore.ParseCertificate reports it
			default:
				return nil, notRSAError(name, keyType(k))
			}
		}
		others = append(others, blk)
	}
	// The key's own certificate first, the chain after it in file order.
	for i, blk := range certs {
		if x, err := x509.ParseCertificate(blk.Bytes); err == nil && pub != nil && pub.Equal(x.PublicKey) {
			certs[0], certs[i] = certs[i], certs[0]
			break
		}
	}
	var b bytes.Buffer
	for _, blk := range append(certs, others...) {
		_ = pem.Encode(&b, blk)
	}
	defer clear(b.Bytes())
	cert, err := keystore.ParseCertificate(b.Bytes())
	if err != nil {
		return nil, inputError(fmt.Errorf("%s: %s", name, certProblem(err)))
	}
	return cert, nil
}

// decodePFX decodes a PKCS#12 file, trying the empty password first and
// then the one the user gives.
func (c *cli) decodePFX(file string, data []byte) (*keystore.Certificate, error) {
	name := displayName(file)
	key, leaf, cas, err := decodeChain(name, data, "")
	if wrongPassword(err) {
		password, perr := c.readPFXPassword(file)
		if perr != nil {
			return nil, perr
		}
		key, leaf, cas, err = decodeChain(name, data, password)
		if wrongPassword(err) {
			return nil, inputError(fmt.Errorf("wrong password for the PKCS#12 file %s", name))
		}
	}
	if errors.Is(err, errPFXTooSlow) {
		return nil, inputError(err)
	}
	if err != nil {
		if _, derr := x509.ParseCertificate(data); derr == nil {
			return nil, inputError(fmt.Errorf("%s holds a certificate without its private key: give a PEM file with both, or a PKCS#12 (.pfx) file", name))
		}
		return nil, inputError(fmt.Errorf("%s is not a PKCS#12 file brokerctl can read: %v", name, strings.TrimPrefix(err.Error(), "pkcs12: ")))
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, notRSAError(name, keyType(key))
	}
	// The key's own certificate first, whatever the order of the bags.
	chain := append([]*x509.Certificate{leaf}, cas...)
	for i, x := range chain {
		if rk.PublicKey.Equal(x.PublicKey) {
			chain[0], chain[i] = chain[i], chain[0]
			break
		}
	}
	pemData := (&keystore.Certificate{Chain: chain, Key: rk}).PEM()
	defer clear(pemData)
	cert, err := keystore.ParseCertificate(pemData)
	if err != nil {
		return nil, inputError(fmt.Errorf("%s: %s", name, certProblem(err)))
	}
	return cert, nil
}

// decodeChain decodes a PKCS#12 file within pfxDecodeLimit. A decoding
// that runs out is left to finish in the background; brokerctl exits soon
// after anyway.
func decodeChain(name string, data []byte, password string) (any, *x509.Certificate, []*x509.Certificate, error) {
	type decoded struct {
		key  any
		leaf *x509.Certificate
		cas  []*x509.Certificate
		err  error
	}
	done := make(chan decoded, 1)
	go func() {
		key, leaf, cas, err := pkcs12.DecodeChain(data, password)
		done <- decoded{key, leaf, cas, err}
	}()
	select {
	case d := <-done:
		return d.key, d.leaf, d.cas, d.err
	case <-time.After(pfxDecodeLimit):
		return nil, nil, nil, fmt.Errorf("%w: decoding the PKCS#12 file %s takes more than %v (its key derivation asks for an unusual number of rounds); "+
			"export it again with the usual settings, or give a PEM file", errPFXTooSlow, name, pfxDecodeLimit)
	}
}

// errPFXTooSlow is behind a PKCS#12 file that decodeChain gave up on.
var errPFXTooSlow = errors.New("PKCS#12 file too slow to decode")

// wrongPassword reports whether a pkcs12 error means the password is wrong.
func wrongPassword(err error) bool {
	return errors.Is(err, pkcs12.ErrIncorrectPassword) || errors.Is(err, pkcs12.ErrDecryption)
}

// readPFXPassword reads a PKCS#12 file's password: at a no-echo prompt on
// a terminal, else the first line of stdin.
func (c *cli) readPFXPassword(file string) (string, error) {
	name := displayName(file)
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) && file != stdinName {
		pw, err := promptSecret(int(f.Fd()), c.stderr, fmt.Sprintf("Password for %s: ", name))
		defer clear(pw)
		if err != nil {
			return "", err
		}
		return string(pw), nil
	}
	if file == stdinName {
		return "", inputError(errors.New("the PKCS#12 data on stdin is protected by a password, and stdin cannot carry both: give the file's path to --certificate"))
	}
	line, err := bufio.NewReaderSize(io.LimitReader(c.stdin, maxPasswordBytes), maxPasswordBytes).ReadSlice('\n')
	defer clear(line)
	switch {
	case errors.Is(err, io.EOF) && len(line) == 0:
		return "", inputError(fmt.Errorf("the PKCS#12 file %s is protected by a password: run on a terminal to be prompted for it, or pipe it into stdin", name))
	case errors.Is(err, bufio.ErrBufferFull):
		return "", inputError(fmt.Errorf("the first line of stdin is longer than %d KiB; pipe in the password of %s only", maxPasswordBytes>>10, name))
	case err != nil && !errors.Is(err, io.EOF):
		return "", fmt.Errorf("reading the password of %s from stdin: %w", name, err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(line), "\n"), "\r"), nil
}

// checkValidity refuses a certificate that is expired or not valid yet.
func checkValidity(name string, x *x509.Certificate, now time.Time) error {
	switch {
	case now.After(x.NotAfter):
		return inputError(fmt.Errorf("the certificate in %s (%s) expired on %s (notAfter): make a new one, upload it to the app registration, and set that",
			name, oneLine(x.Subject.String()), x.NotAfter.UTC().Format(time.RFC3339)))
	case now.Add(clockSkew).Before(x.NotBefore):
		return inputError(fmt.Errorf("the certificate in %s (%s) is not valid before %s (notBefore): set it from then on, or check this host's clock",
			name, oneLine(x.Subject.String()), x.NotBefore.UTC().Format(time.RFC3339)))
	}
	return nil
}

func encryptedKeyError(name, keyFile string) error {
	if keyFile == stdinName {
		keyFile = "FILE"
	}
	return inputError(fmt.Errorf("the private key in %s is encrypted: decrypt it with `openssl pkey -in %s -out key.pem` (and, if the certificate is in the same file, `openssl x509 -in %s -out cert.pem`), give --certificate cert.pem --key key.pem, and delete key.pem afterwards; or give a PKCS#12 (.pfx) file, whose password brokerctl asks for", name, keyFile, keyFile))
}

func notRSAError(name, kind string) error {
	return inputError(fmt.Errorf("the private key in %s is %s key; Entra ID certificate credentials need an RSA key of at least 2048 bits", name, kind))
}

// keyType names a private key's algorithm with its article.
func keyType(k any) string {
	switch fmt.Sprintf("%T", k) {
	case "*ecdsa.PrivateKey":
		return "an ECDSA"
	case "ed25519.PrivateKey":
		return "an Ed25519"
	case "*ecdh.PrivateKey":
		return "an ECDH"
	}
	return fmt.Sprintf("a %T", k)
}

// certProblem is a keystore.ParseCertificate error without its prefixes.
func certProblem(err error) string {
	return strings.TrimPrefix(err.Error(), keystore.ErrInvalidSecret.Error()+": certificate credential: ")
}

// displayName is how a --certificate or --key argument is named in
// messages.
func displayName(file string) string {
	if file == stdinName {
		return "stdin"
	}
	return file
}

// unwrapPath drops an *os.PathError's op and path, which the message names
// already.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
