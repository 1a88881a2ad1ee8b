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

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
  brokerctl credential set --app partner`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(c.credentialSetCommand())
	return cmd
}

func (c *cli) credentialSetCommand() *cobra.Command {
	var app string
	cmd := &cobra.Command{
		Use:   "set --app APP",
		Short: "Store a new client secret for an app",
		Long: `Set stores a new client secret for a configured app. brokerd first
verifies it by acquiring a token in one of the app's tenants, and keeps the
old secret if that fails. A keystore that cannot store secrets (systemd
credentials) is reported before anything is sent to Entra ID.

When the answer is lost (brokerd or its keyring did not answer within the
timeout), the secret may or may not have been stored: set says so and exits
6. brokerd then reads its keystore again and uses whatever it holds; check
with "brokerctl tenants".

The secret is read from stdin, never from the command line: command lines
are visible to other users and kept in shell history, so there is no flag
for it. On a terminal, set prompts for it without echo; otherwise it reads
all of stdin (at most 64 KiB) and removes one trailing newline. The secret
is never printed.`,
		Example: `  # Type or paste the secret at a prompt that does not echo it
  brokerctl credential set --app partner

  # From a file or a secret manager
  brokerctl credential set --app partner < /run/secrets/partner-client-secret
  pass show entra/partner | brokerctl credential set --app partner`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE:                  action(func(*cobra.Command) error { return c.setCredential(app) }),
	}
	cmd.Flags().StringVar(&app, "app", "", "configured name of the app (required)")
	_ = cmd.MarkFlagRequired("app")
	_ = cmd.RegisterFlagCompletionFunc("app", c.completeFromTenants(func(ts []*brokerv1.TenantStatus) []cobra.Completion {
		var apps []cobra.Completion
		for _, t := range ts {
			if !slices.Contains(apps, t.GetApp()) {
				apps = append(apps, t.GetApp())
			}
		}
		return apps
	}))
	return cmd
}

func (c *cli) setCredential(app string) error {
	if strings.TrimSpace(app) == "" {
		return flagError("--app must not be empty: give the app's configured name")
	}

	// Connect before asking for the secret, so that nobody types it for a
	// brokerd that is not running.
	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()

	secret, err := c.readSecret(app)
	if err != nil {
		return err
	}

	var resp *brokerv1.SetCredentialResponse
	err = c.call(func(ctx context.Context) error {
		resp, err = bc.SetCredential(ctx, &brokerv1.SetCredentialRequest{App: app, Credential: &brokerv1.SetCredentialRequest_ClientSecret{ClientSecret: secret}})
		return err
	})
	if status.Code(err) == codes.DeadlineExceeded && !strings.Contains(status.Convert(err).Message(), "may or may not") {
		// brokerd did not answer in time: it may have stored the secret
		// after all. (When brokerd knows the outcome is unknown, its own
		// message says so and how to check.)
		return status.Errorf(codes.DeadlineExceeded,
			"%s; the new credential of app %s may or may not have been stored: check `brokerctl tenants`, and run `brokerctl credential set --app %s` again if app %s's tenants fail",
			status.Convert(err).Message(), app, app, app)
	}
	if err != nil {
		return err
	}
	if t := resp.GetVerifiedWithTenant(); t != "" {
		_, err = fmt.Fprintf(c.stdout, "credential for app %s stored (verified with tenant %s)\n", app, t)
	} else {
		_, err = fmt.Fprintf(c.stdout, "credential for app %s stored (not verified: the app has no tenant to verify it with)\n", app)
	}
	return err
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
