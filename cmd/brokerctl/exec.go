package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tokenbroker/tokenbroker/internal/miendpoint"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// Exit statuses of `exec` when CMD cannot be run, as a shell's.
const (
	exitCannotExecute   = 126
	exitCommandNotFound = 127
)

// exitCodeError ends brokerctl with code, after printing err as one line
// when it is not nil: CMD's own status for `exec`.
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// forwardedSignals are passed on to CMD.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// unsetForChild are the variables removed from CMD's environment, so that
// an SDK's credential chain reaches the managed identity, and the one at
// brokerctl's endpoint: another identity endpoint (App Service, Service
// Fabric, Azure Arc, Azure ML, Cloud Shell), a service principal's or a
// user's credential (EnvironmentCredential and WorkloadIdentityCredential
// come first in DefaultAzureCredential), or AZURE_CLIENT_ID, which
// DefaultAzureCredential passes on as a user-assigned identity.
var unsetForChild = []string{
	"MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT", "DEFAULT_IDENTITY_CLIENT_ID",
	"AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
	"AZURE_FEDERATED_TOKEN_FILE", "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_TOKEN_CREDENTIALS",
}

// execFlags are the flags of `brokerctl exec`.
type execFlags struct {
	tenant string
	scopes []string
}

func (c *cli) execCommand() *cobra.Command {
	var f execFlags
	cmd := &cobra.Command{
		Use:   "exec --tenant TENANT [--scope SCOPE]... -- CMD [ARG...]",
		Short: "Run a program whose Azure SDK managed-identity credential gets a tenant's tokens",
		Long: `Exec runs CMD with a managed-identity endpoint for one tenant, so that a
program built on an Azure SDK (DefaultAzureCredential or
ManagedIdentityCredential in Go, Python, .NET, Java or JavaScript) gets the
tenant's tokens from brokerd with no code change and no secret.

The endpoint speaks the Azure App Service managed-identity protocol
(api-version 2019-08-01) on 127.0.0.1, at a port the kernel picks, for as
long as CMD runs. CMD's environment gets:

  IDENTITY_ENDPOINT        http://127.0.0.1:PORT/msi/token
  IDENTITY_HEADER          a random value every request must send back
                           (not a token, not the app's secret)
  AZURE_TENANT_ID          the tenant's id
  AZURE_TOKEN_CREDENTIALS  prod, so that DefaultAzureCredential skips the
                           developer tools (Azure CLI, azd, PowerShell)

and loses, so that the SDK's credential chain reaches this endpoint:
MSI_ENDPOINT, MSI_SECRET, IMDS_ENDPOINT, DEFAULT_IDENTITY_CLIENT_ID and every
IDENTITY_* variable (other managed-identity endpoints);
AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH,
AZURE_CLIENT_CERTIFICATE_PASSWORD, AZURE_FEDERATED_TOKEN_FILE,
AZURE_USERNAME and AZURE_PASSWORD (EnvironmentCredential and
WorkloadIdentityCredential come before the managed identity); and
AZURE_CLIENT_ID (DefaultAzureCredential would ask for it as a user-assigned
identity, which the endpoint does not serve).

A token request for resource R is for scope R/.default, and brokerd decides
as for "brokerctl get --scope R/.default": the app's scopes and
allowed_scopes only. --scope narrows that further to the scopes named (a
resource or its /.default scope). Errors reach the SDK's error message as
JSON {"error","error_description"} with brokerd's text: 403 for a scope the
user may not have or a missing admin consent, 400 for a bad request, 503
and 429 (which the SDKs retry) while Entra ID or brokerd is unavailable.

Before starting CMD, exec gets one token (for the first --scope, else the
app's scopes) to check that brokerd serves the tenant to this user; its
errors and exit statuses are those of "brokerctl get". Once CMD runs,
SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are passed on to it
(SIGINT and SIGQUIT not when brokerctl is in the terminal's foreground
process group: the terminal sent them to CMD too), and brokerctl exits with
CMD's exit status, or 128+N when a signal N killed it. A CMD that is not
found exits 127, one that cannot be run 126, as in a shell.

Programs that do not ask the managed identity for tokens are not served:
an SDK client given a secret or a certificate, or the Azure CLI, which uses
the login in ~/.azure ("az login --identity" on recent versions may reach
the endpoint, but it rewrites that login and is not supported). Use
"brokerctl get" for them.`,
		Example: `  # A Python collector using DefaultAzureCredential, for tenant contoso
  brokerctl exec --tenant contoso -- python3 collect.py

  # Only Microsoft Graph tokens for the program
  brokerctl exec --tenant contoso --scope https://graph.microsoft.com -- ./report

  # What the program sees
  brokerctl exec --tenant contoso -- sh -c 'echo "$IDENTITY_ENDPOINT $AZURE_TENANT_ID"'`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("no command to run: put it after --, e.g. brokerctl exec --tenant contoso -- python3 collect.py")
			}
			return nil
		},
		DisableFlagsInUseLine: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if err := c.exec(f, args); err != nil {
				return &commandError{err: err}
			}
			return nil
		},
	}
	flags := cmd.Flags()
	// Every flag after CMD is CMD's.
	flags.SetInterspersed(false)
	flags.StringVar(&f.tenant, "tenant", "", "tenant: configured name, tenant id or domain (required)")
	flags.StringArrayVar(&f.scopes, "scope", nil, "a resource or /.default scope CMD may get tokens for; repeatable (default: any brokerd allows)")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.RegisterFlagCompletionFunc("tenant", c.completeTenantNames())
	return cmd
}

func (c *cli) exec(f execFlags, args []string) error {
	if strings.TrimSpace(f.tenant) == "" {
		return flagError("--tenant must not be empty: give the tenant's configured name, tenant id or domain")
	}
	var scopes []string
	for _, s := range f.scopes {
		scope, err := miendpoint.Scope(s)
		if err != nil {
			return flagError("invalid --scope %q: %v", s, err)
		}
		scopes = append(scopes, scope)
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return cannotRun(args[0], err)
	}

	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()
	getToken := func(scope string) (tok *brokerv1.GetTokenResponse, err error) {
		var req []string
		if scope != "" {
			req = []string{scope}
		}
		err = c.call(func(ctx context.Context) error {
			tok, err = bc.GetToken(ctx, f.tenant, req, 0)
			return err
		})
		return tok, err
	}
	first := ""
	if len(scopes) > 0 {
		first = scopes[0]
	}
	tok, err := getToken(first)
	if err != nil {
		return err
	}
	tenantID := tok.GetTenantId()
	if tenantID == "" {
		return errors.New("brokerd answered without the tenant's id")
	}

	// Each token request is one GetToken under --timeout; a request
	// whose client hangs up still finishes that call, so the endpoint's
	// in-flight bound holds.
	ep, err := miendpoint.Listen(func(_ context.Context, scope string) (*brokerv1.GetTokenResponse, error) {
		return getToken(scope)
	}, miendpoint.Options{Scopes: scopes, Timeout: c.timeout})
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- ep.Serve() }()
	defer func() {
		_ = ep.Close()
		<-served
	}()

	child := exec.Command(path, args[1:]...)
	child.Args[0] = args[0]
	child.Env = childEnv(os.Environ(), ep.URL(), ep.Secret(), tenantID)
	child.Stdin, child.Stdout, child.Stderr = c.stdin, c.stdout, c.stderr

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	if err := child.Start(); err != nil {
		return cannotRun(args[0], err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigs:
				if (sig == syscall.SIGINT || sig == syscall.SIGQUIT) && inForegroundGroup() {
					continue
				}
				_ = child.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err = child.Wait()
	close(done)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &exitCodeError{code: 128 + int(ws.Signal())}
		}
		return &exitCodeError{code: ee.ExitCode()}
	default:
		return fmt.Errorf("waiting for %s: %w", args[0], err)
	}
}

// cannotRun reports a CMD that cannot be started, with a shell's exit
// status: 127 when it is not found, 126 otherwise.
func cannotRun(name string, err error) error {
	code := exitCannotExecute
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		code = exitCommandNotFound
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	return &exitCodeError{code: code, err: fmt.Errorf("cannot run %q: %v", name, err)}
}

// childEnv is env without the variables that would lead an SDK elsewhere
// (unsetForChild and every IDENTITY_*), plus the endpoint's.
func childEnv(env []string, endpoint, secret, tenantID string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "IDENTITY_") || k == "AZURE_TENANT_ID" || slices.Contains(unsetForChild, k) {
			continue
		}
		out = append(out, kv)
	}
	return append(out,
		"IDENTITY_ENDPOINT="+endpoint,
		"IDENTITY_HEADER="+secret,
		"AZURE_TENANT_ID="+tenantID,
		"AZURE_TOKEN_CREDENTIALS=prod")
}

// inForegroundGroup reports whether brokerctl's process group is the
// foreground group of its controlling terminal: then the terminal sends
// its SIGINT and SIGQUIT to CMD as well.
func inForegroundGroup() bool {
	tty, err := os.Open("/dev/tty")
	if err != nil {
		return false
	}
	defer tty.Close()
	pgrp, err := unix.IoctlGetInt(int(tty.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == syscall.Getpgrp()
}
