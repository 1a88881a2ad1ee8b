package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker/client"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// getFlags are the flags of `brokerctl get`.
type getFlags struct {
	tenant   string
	scopes   []string
	minValid time.Duration
	output   string
	watch    bool
}

func (c *cli) getCommand() *cobra.Command {
	var f getFlags
	cmd := &cobra.Command{
		Use:   "get --tenant TENANT [--scope SCOPE] [--min-valid DURATION] [--output token|json|header] [--watch]",
		Short: "Print an access token for a tenant",
		Long: `Get prints an app-only access token for one tenant on stdout, followed by a
newline, and nothing else, so that "$(brokerctl get ...)" is the token.

The tenant is its configured name, its tenant id (a GUID) or one of its
configured domains. Without --scope the token is for the scopes configured
for the tenant's app (for Defender for Endpoint,
https://api.securitycenter.microsoft.com/.default). --scope names another
resource's /.default scope; a token is for one resource, and brokerd hands out
only the scopes its configuration allows (apps.NAME.allowed_scopes). brokerd
answers from its cache when the cached token has at least --min-valid left (at
most half a token's lifetime), and otherwise fetches a new one, within
--timeout.

--output chooses what is printed, always one line:
  token   the token alone (the default)
  header  "Authorization: Bearer <token>", for curl -H @- (the token is
          read from stdin, so it never shows in the process list)
  json    {"access_token","expires_on" (Unix seconds),"expires_at"
          (RFC 3339),"tenant_id","scopes"}, in this order

--watch keeps following the tenant's token: it prints the current token at
once, then each new token on its own line as soon as brokerd has refreshed
it, for collectors that read stdin line by line. When an acquisition fails,
brokerd's error goes to stderr as one line ("brokerctl: CODE: message") and
the watch goes on. --timeout bounds only the wait for the first line. SIGINT
and SIGTERM end the watch with status 0; when brokerd stops or the watch
fails, brokerctl exits with the usual status (6 when brokerd is gone), and a
supervisor (systemd Restart=, a shell loop) starts it again.`,
		Example: `  # Call the Defender for Endpoint API in tenant contoso; curl reads the
  # header from stdin, so the token does not show in the process list
  brokerctl get --tenant contoso --output header |
    curl -sS -H @- https://api.securitycenter.microsoft.com/api/alerts

  # By tenant id, for another API, valid for at least 30 more minutes
  brokerctl get --tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 \
    --scope https://graph.microsoft.com/.default --min-valid 30m

  # The token with its expiry, for scripts
  brokerctl get --tenant contoso --output json | jq -r .expires_at

  # Feed a collector every new token, one JSON object per line
  brokerctl get --tenant contoso --watch --output json | my-collector`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE:                  action(func(*cobra.Command) error { return c.get(f) }),
	}
	flags := cmd.Flags()
	flags.StringVar(&f.tenant, "tenant", "", "tenant: configured name, tenant id or domain (required)")
	flags.StringArrayVar(&f.scopes, "scope", nil, "the /.default scope of the resource to get a token for, e.g. https://graph.microsoft.com/.default (default: the app's configured scope)")
	flags.DurationVar(&f.minValid, "min-valid", 0, "least lifetime the token must have left, e.g. 30m (default: brokerd's, 5m unless configured)")
	flags.StringVarP(&f.output, "output", "o", outputToken, "what to print: token, json or header")
	flags.BoolVarP(&f.watch, "watch", "w", false, "keep printing each new token until interrupted")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]cobra.Completion{outputToken, outputJSON, outputHeader}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("tenant", c.completeTenantNames())
	return cmd
}

func (c *cli) get(f getFlags) error {
	if strings.TrimSpace(f.tenant) == "" {
		return flagError("--tenant must not be empty: give the tenant's configured name, tenant id or domain")
	}
	for _, s := range f.scopes {
		if strings.TrimSpace(s) == "" {
			return flagError("--scope must not be empty")
		}
	}
	if f.minValid < 0 {
		return flagError("invalid --min-valid %v: must not be negative", f.minValid)
	}
	if err := checkTokenOutput(f.output); err != nil {
		return err
	}

	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()
	if f.watch {
		return c.watch(bc, f)
	}

	var tok *brokerv1.GetTokenResponse
	err = c.call(func(ctx context.Context) error {
		tok, err = bc.GetToken(ctx, f.tenant, f.scopes, f.minValid)
		return err
	})
	if err != nil {
		return err
	}
	return c.printToken(f.output, tok)
}

// printToken writes tok in the output format with one write.
func (c *cli) printToken(output string, tok *brokerv1.GetTokenResponse) error {
	if tok.GetAccessToken() == "" {
		return errors.New("brokerd answered without a token")
	}
	line, err := formatToken(output, tok)
	if err != nil {
		return err
	}
	_, err = c.stdout.Write(line)
	return err
}

// watch prints each token of a WatchToken stream as it comes, and each
// error event as one line on stderr, until SIGINT or SIGTERM (status 0) or
// until the stream fails.
func (c *cli) watch(bc *client.Client, f getFlags) error {
	sig, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(sig)
	defer cancel()
	// --timeout bounds the wait for the first event only. The timer and
	// the first event race; whichever takes the flag first wins, so a
	// watch that printed a token is never ended as timed out.
	var flag atomic.Int32 // 0: waiting; 1: an event came; 2: timed out
	first := time.AfterFunc(c.timeout, func() {
		if flag.CompareAndSwap(0, 2) {
			cancel()
		}
	})
	defer first.Stop()

	st, err := bc.WatchToken(ctx, f.tenant, f.scopes, f.minValid)
	for err == nil {
		var ev *brokerv1.WatchTokenResponse
		if ev, err = st.Recv(); err != nil {
			break
		}
		if !flag.CompareAndSwap(0, 1) && flag.Load() == 2 {
			break // timed out just as the event came: cancel has run
		}
		first.Stop()
		if e := ev.GetError(); e != nil {
			fmt.Fprintf(c.stderr, "brokerctl: %v: %s\n", codes.Code(e.GetCode()), oneLine(e.GetMessage()))
			continue
		}
		err = c.printToken(f.output, ev.GetToken())
	}
	switch {
	case sig.Err() != nil:
		return nil // interrupted: the watch's normal end
	case flag.Load() == 2:
		return status.Errorf(codes.DeadlineExceeded, "brokerd sent no token within --timeout %v (raise --timeout; `brokerctl tenants` shows each tenant's state)", c.timeout)
	}
	return err
}
