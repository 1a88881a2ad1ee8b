package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// getFlags are the flags of `brokerctl get`.
type getFlags struct {
	tenant   string
	scopes   []string
	minValid time.Duration
}

func (c *cli) getCommand() *cobra.Command {
	var f getFlags
	cmd := &cobra.Command{
		Use:   "get --tenant TENANT [--scope SCOPE] [--min-valid DURATION]",
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
--timeout.`,
		Example: `  # Call the Defender for Endpoint API in tenant contoso; curl reads the
  # header from stdin, so the token does not show in the process list
  printf 'Authorization: Bearer %s\n' "$(brokerctl get --tenant contoso)" |
    curl -sS -H @- https://api.securitycenter.microsoft.com/api/alerts

  # By tenant id, for another API, valid for at least 30 more minutes
  brokerctl get --tenant 72f988bf-86f1-41af-91ab-2d7cd011db47 \
    --scope https://graph.microsoft.com/.default --min-valid 30m`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE:                  action(func(*cobra.Command) error { return c.get(f) }),
	}
	flags := cmd.Flags()
	flags.StringVar(&f.tenant, "tenant", "", "tenant: configured name, tenant id or domain (required)")
	flags.StringArrayVar(&f.scopes, "scope", nil, "the /.default scope of the resource to get a token for, e.g. https://graph.microsoft.com/.default (default: the app's configured scope)")
	flags.DurationVar(&f.minValid, "min-valid", 0, "least lifetime the token must have left, e.g. 30m (default: brokerd's, 5m unless configured)")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.RegisterFlagCompletionFunc("tenant", c.completeFromTenants(func(ts []*brokerv1.TenantStatus) []cobra.Completion {
		var names []cobra.Completion
		for _, t := range ts {
			names = append(names, cobra.CompletionWithDesc(t.GetName(), t.GetTenantId()))
		}
		return names
	}))
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

	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()

	var tok *brokerv1.GetTokenResponse
	err = c.call(func(ctx context.Context) error {
		tok, err = bc.GetToken(ctx, f.tenant, f.scopes, f.minValid)
		return err
	})
	if err != nil {
		return err
	}
	if tok.GetAccessToken() == "" {
		return errors.New("brokerd answered without a token")
	}
	_, err = fmt.Fprintln(c.stdout, tok.GetAccessToken())
	return err
}
