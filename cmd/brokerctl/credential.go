package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tokenbroker/tokenbroker/keystore"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// maxSecretBytes bounds what `credential set` reads from stdin. Entra ID
// client secrets are about 40 characters; more than this is not a secret.
const maxSecretBytes = 64 << 10

func (c *cli) credentialCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "credential",
		Short: "Manage the app credentials brokerd acquires tokens with",
		Example: `  # Store a new client secret for app partner, typed at a prompt
  brokerctl credential set --app partner --expires 2027-03-01

  # Store a certificate with its private key instead
  brokerctl credential set --app partner --certificate partner.pfx

  # What app partner authenticates with, and when it expires
  brokerctl credential show --app partner

  # Remove it
  brokerctl credential delete --app partner`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(c.credentialSetCommand(), c.credentialShowCommand(), c.credentialDeleteCommand())
	return cmd
}

// setFlags are the flags of `brokerctl credential set`.
type setFlags struct {
	app          string
	certificate  string
	key          string
	verifyTenant string
	noVerify     bool
	expires      string
}

func (c *cli) credentialSetCommand() *cobra.Command {
	var f setFlags
	cmd := &cobra.Command{
		Use:   "set --app APP [--certificate FILE [--key FILE]] [--verify-tenant TENANT | --no-verify] [--expires DATE]",
		Short: "Store a new client secret or certificate for an app",
		Long: `Set stores a new credential for a configured app: a client secret, or with
--certificate a certificate and its private key. brokerd first verifies it by
acquiring a token in one of the app's tenants (--verify-tenant names which),
and keeps the old credential if that fails. A keystore that cannot store
credentials (systemd credentials), or one too small for the certificate, is
reported before anything is sent to Entra ID.

When the answer is lost (brokerd or its keyring did not answer within the
timeout), the credential may or may not have been stored: set says so and
exits 6. brokerd then reads its keystore again and uses whatever it holds;
check with "brokerctl credential show".

A client secret is read from stdin, never from the command line: command
lines are visible to other users and kept in shell history, so there is no
flag for it. On a terminal, set prompts for it without echo; otherwise it
reads all of stdin (at most 64 KiB) and removes one trailing newline.
--expires DATE (2027-03-01, or an RFC 3339 time) records when the secret
runs out, as the app registration's "Certificates & secrets" page shows it:
Entra ID does not tell a client, and brokerd warns from 30 days before.

--certificate FILE reads a certificate and its private key, as this user
(brokerd never opens the file), from a PEM file (the certificate, any chain
and an unencrypted RSA key, PKCS#1 or PKCS#8, in any order; the key may be
in a file of its own, --key) or a PKCS#12 file (.pfx, .p12). "-" reads
stdin. A PKCS#12 file's password is asked for without echo on a terminal,
or read as the first line of stdin. The certificate must be valid now and
its RSA key at least 2048 bits; set prints its SHA-1 thumbprint, which the
app registration's "Certificates & secrets" page shows, to check it is the
one uploaded there.

--no-verify stores the credential without asking Entra ID (offline setup):
a wrong one shows only when brokerd next acquires a token.

The secret, the key and the password are never printed.`,
		Example: `  # Type or paste the secret at a prompt that does not echo it
  brokerctl credential set --app partner

  # From a file or a secret manager, with the expiry the portal shows
  brokerctl credential set --app partner --expires 2027-03-01 < /run/secrets/partner-client-secret
  pass show entra/partner | brokerctl credential set --app partner

  # A certificate: a PKCS#12 file (password prompt), or PEM files
  brokerctl credential set --app partner --certificate partner.pfx
  brokerctl credential set --app partner --certificate cert.pem --key key.pem

  # Verify it with tenant contoso, or not at all (offline setup)
  brokerctl credential set --app partner --certificate partner.pem --verify-tenant contoso
  brokerctl credential set --app partner --certificate partner.pem --no-verify`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE: action(func(cmd *cobra.Command) error {
			if cmd.Flags().Changed("certificate") && f.certificate == "" {
				return flagError("--certificate must not be empty: give the certificate's file, or - for stdin")
			}
			return c.setCredential(f)
		}),
	}
	flags := cmd.Flags()
	flags.StringVar(&f.app, "app", "", "configured name of the app (required)")
	flags.StringVar(&f.certificate, "certificate", "", "store the certificate and private key in `FILE` (PEM or PKCS#12; - for stdin) instead of a client secret")
	flags.StringVar(&f.key, "key", "", "the certificate's PEM private key `FILE`, when not in the --certificate file")
	flags.StringVar(&f.verifyTenant, "verify-tenant", "", "verify the credential with this `TENANT` (default: the first of the app's tenants that can)")
	flags.BoolVar(&f.noVerify, "no-verify", false, "store the credential without verifying it with Entra ID")
	flags.StringVar(&f.expires, "expires", "", "when the client secret expires: `DATE` (YYYY-MM-DD) or an RFC 3339 time")
	_ = cmd.MarkFlagRequired("app")
	_ = cmd.MarkFlagFilename("certificate", "pem", "crt", "cer", "pfx", "p12")
	_ = cmd.MarkFlagFilename("key", "pem", "key")
	c.completeApp(cmd)
	_ = cmd.RegisterFlagCompletionFunc("verify-tenant", c.completeTenantNames())
	return cmd
}

// completeApp completes cmd's --app flag with the apps of brokerd's tenants.
func (c *cli) completeApp(cmd *cobra.Command) {
	_ = cmd.RegisterFlagCompletionFunc("app", c.completeFromTenants(func(ts []*brokerv1.TenantStatus) []cobra.Completion {
		var apps []cobra.Completion
		for _, t := range ts {
			if !slices.Contains(apps, t.GetApp()) {
				apps = append(apps, t.GetApp())
			}
		}
		return apps
	}))
}

// check validates f and returns the secret's expiry (zero when none).
func (f setFlags) check(now time.Time) (time.Time, error) {
	switch {
	case strings.TrimSpace(f.app) == "":
		return time.Time{}, flagError("--app must not be empty: give the app's configured name")
	case f.noVerify && f.verifyTenant != "":
		return time.Time{}, flagError("--no-verify and --verify-tenant exclude each other: give one")
	case f.verifyTenant != "" && strings.TrimSpace(f.verifyTenant) == "":
		return time.Time{}, flagError("--verify-tenant must not be empty: give the tenant's configured name, tenant id or domain")
	case f.key != "" && f.certificate == "":
		return time.Time{}, flagError("--key goes with --certificate: give the certificate file too")
	case f.key == stdinName && f.certificate == stdinName:
		return time.Time{}, flagError("--certificate and --key cannot both read stdin")
	case f.expires != "" && f.certificate != "":
		return time.Time{}, flagError("--expires is for client secrets: a certificate's expiry is its own notAfter")
	case f.expires == "":
		return time.Time{}, nil
	}
	exp, err := parseExpiry(f.expires)
	if err != nil {
		return time.Time{}, err
	}
	if !exp.After(now) {
		return time.Time{}, flagError("--expires %s is in the past: give the date the secret expires, as the app registration's \"Certificates & secrets\" page shows it", f.expires)
	}
	return exp, nil
}

// parseExpiry reads --expires: a date (the start of that day, UTC) or an
// RFC 3339 time.
func parseExpiry(s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, flagError("invalid --expires %q: give a date, 2027-03-01, or an RFC 3339 time, 2027-03-01T12:00:00Z", oneLine(s))
}

func (c *cli) setCredential(f setFlags) error {
	now := c.now()
	expires, err := f.check(now)
	if err != nil {
		return err
	}

	// Connect before asking for the secret or a password, so that nobody
	// types it for a brokerd that is not running.
	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()

	req := &brokerv1.SetCredentialRequest{App: f.app, VerifyTenant: f.verifyTenant, NoVerify: f.noVerify}
	var cert *keystore.Certificate
	if f.certificate != "" {
		if cert, err = c.readCertificate(certSource{certFile: f.certificate, keyFile: f.key}, now); err != nil {
			return err
		}
		pemData := cert.PEM()
		defer clear(pemData)
		req.Credential = &brokerv1.SetCredentialRequest_CertificatePem{CertificatePem: pemData}
	} else {
		secret, err := c.readSecret(f.app)
		if err != nil {
			return err
		}
		req.Credential = &brokerv1.SetCredentialRequest_ClientSecret{ClientSecret: secret}
		if !expires.IsZero() {
			req.ExpiresAt = timestamppb.New(expires)
		}
	}

	var resp *brokerv1.SetCredentialResponse
	err = c.call(func(ctx context.Context) error {
		resp, err = bc.SetCredential(ctx, req)
		return err
	})
	if status.Code(err) == codes.DeadlineExceeded && !strings.Contains(status.Convert(err).Message(), "may or may not") {
		// brokerd did not answer in time: it may have stored the
		// credential after all. (When brokerd knows the outcome is
		// unknown, its own message says so and how to check.)
		return status.Errorf(codes.DeadlineExceeded,
			"%s; the new credential of app %s may or may not have been stored: check `brokerctl credential show --app %s`, and run `brokerctl credential set --app %s` again if app %s's tenants fail",
			status.Convert(err).Message(), f.app, f.app, f.app, f.app)
	}
	if err != nil {
		return err
	}
	return c.printSet(f, resp, cert, expires, now)
}

// printSet reports a stored credential: what it is, and how it was checked.
func (c *cli) printSet(f setFlags, resp *brokerv1.SetCredentialResponse, cert *keystore.Certificate, expires, now time.Time) error {
	var b strings.Builder
	switch t := resp.GetVerifiedWithTenant(); {
	case t != "":
		fmt.Fprintf(&b, "credential for app %s stored (verified with tenant %s)\n", f.app, oneLine(t))
	case f.noVerify:
		fmt.Fprintf(&b, "credential for app %s stored (not verified: --no-verify)\n", f.app)
	default:
		fmt.Fprintf(&b, "credential for app %s stored (not verified: the app has no tenant to verify it with)\n", f.app)
	}
	if cert != nil {
		fmt.Fprintf(&b, "  kind:        certificate\n")
		fmt.Fprintf(&b, "  subject:     %s\n", oneLine(cert.Chain[0].Subject.String()))
		fmt.Fprintf(&b, "  thumbprint:  %s (SHA-1, as the Azure portal shows it)\n", cert.ThumbprintSHA1())
		fmt.Fprintf(&b, "  expires:     %s\n", expiryText(now, cert.NotAfter()))
	} else if !expires.IsZero() {
		fmt.Fprintf(&b, "  expires:     %s\n", expiryText(now, expires))
	}
	if _, err := io.WriteString(c.stdout, b.String()); err != nil {
		return err
	}
	if f.noVerify {
		fmt.Fprintf(c.stderr, "WARNING: the credential was stored WITHOUT checking it with Entra ID; if it is wrong or not registered on app %s, its tenants fail at the next token request. Check with `brokerctl tenants` once a token is due, or set it again without --no-verify.\n", f.app)
	}
	return nil
}

// readSecret reads the client secret: at a no-echo prompt when stdin is a
// terminal, otherwise all of stdin. It never puts the secret in an error.
func (c *cli) readSecret(app string) (string, error) {
	var raw []byte
	var err error
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		raw, err = promptSecret(int(f.Fd()), c.stderr, fmt.Sprintf("Client secret for app %s: ", app))
	} else {
		raw, err = readSecretFrom(c.stdin)
	}
	defer clear(raw)
	if err != nil {
		return "", err
	}
	return validateSecret(raw)
}

// promptSecret prompts on w and reads a line from the terminal fd without
// echo. If a signal ends brokerctl meanwhile, the terminal's echo is turned
// back on first.
func promptSecret(fd int, w io.Writer, prompt string) ([]byte, error) {
	state, err := term.GetState(fd)
	if err != nil {
		return nil, fmt.Errorf("reading the secret from the terminal: %w", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	defer func() {
		signal.Stop(sigs)
		close(done)
	}()
	go func() {
		select {
		case sig := <-sigs:
			_ = term.Restore(fd, state)
			fmt.Fprintln(w)
			code := 1
			if s, ok := sig.(syscall.Signal); ok {
				code = 128 + int(s)
			}
			os.Exit(code)
		case <-done:
		}
	}()

	fmt.Fprint(w, prompt)
	secret, err := term.ReadPassword(fd)
	fmt.Fprintln(w) // the Enter the user typed was not echoed
	if err != nil {
		return nil, fmt.Errorf("reading the secret from the terminal: %w", err)
	}
	return secret, nil
}

// readSecretFrom reads all of r, at most maxSecretBytes, and removes one
// trailing "\n" or "\r\n".
func readSecretFrom(r io.Reader) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxSecretBytes+1))
	if err != nil {
		clear(raw)
		return nil, fmt.Errorf("reading the secret from stdin: %w", err)
	}
	if len(raw) > maxSecretBytes {
		clear(raw)
		return nil, inputError(fmt.Errorf("stdin holds more than %d KiB; pipe in the client secret value only", maxSecretBytes>>10))
	}
	if n := len(raw); n > 0 && raw[n-1] == '\n' {
		raw = raw[:n-1]
		if n := len(raw); n > 0 && raw[n-1] == '\r' {
			raw = raw[:n-1]
		}
	}
	return raw, nil
}

// validateSecret refuses an empty secret or one of several lines, without
// quoting it.
func validateSecret(raw []byte) (string, error) {
	if len(raw) == 0 {
		return "", inputError(errors.New("empty client secret: pipe the secret into stdin, or run on a terminal to be prompted for it"))
	}
	if slices.Contains(raw, '\n') || slices.Contains(raw, '\r') {
		return "", inputError(errors.New("the client secret on stdin spans several lines; pipe in the secret value only"))
	}
	return string(raw), nil
}
