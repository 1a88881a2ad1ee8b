package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// The values of `tenants --output`.
const (
	outputTable = "table"
	outputJSON  = "json"
)

func (c *cli) tenantsCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "tenants [--output table|json]",
		Short: "List the configured tenants and their state",
		Long: `Tenants lists every configured tenant and whether brokerd can serve it. It
never shows a token or a secret.

The table's columns: NAME, TENANT ID, APP; STATE, one of pending (no token
yet), ready, degraded (the last refresh failed, the cached token is still
valid), failed (no valid token) and no-credential (run "brokerctl credential
set"); EXPIRES IN, the time left on the cached token; NEXT REFRESH, when
brokerd will next fetch a token; LAST ERROR, the last failure and what to do
about it. "-" means none.

--output json prints brokerd's ListTenantsResponse as protobuf JSON with its
snake_case field names (fields with zero values are left out), for scripts.`,
		Example: `  brokerctl tenants

  # Names of the tenants that are not ready
  brokerctl tenants --output json |
    jq -r '.tenants[] | select(.state != "TENANT_STATE_READY") | .name'`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE:                  action(func(*cobra.Command) error { return c.tenants(output) }),
	}
	cmd.Flags().StringVarP(&output, "output", "o", outputTable, "output format: table or json")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(
		[]cobra.Completion{outputTable, outputJSON}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func (c *cli) tenants(output string) error {
	if output != outputTable && output != outputJSON {
		return flagError("invalid --output %q: want %s or %s", output, outputTable, outputJSON)
	}

	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()

	var ts []*brokerv1.TenantStatus
	err = c.call(func(ctx context.Context) error {
		ts, err = bc.ListTenants(ctx)
		return err
	})
	if err != nil {
		return err
	}

	if output == outputJSON {
		return c.printTenantsJSON(ts)
	}
	return c.printTenantsTable(ts)
}

func (c *cli) printTenantsJSON(ts []*brokerv1.TenantStatus) error {
	out, err := protojson.MarshalOptions{UseProtoNames: true, Multiline: true}.
		Marshal(&brokerv1.ListTenantsResponse{Tenants: ts})
	if err != nil {
		return fmt.Errorf("encoding the tenants as JSON: %w", err)
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", out)
	return err
}

func (c *cli) printTenantsTable(ts []*brokerv1.TenantStatus) error {
	now := c.now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTENANT ID\tAPP\tSTATE\tEXPIRES IN\tNEXT REFRESH\tLAST ERROR")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			cell(t.GetName()),
			cell(t.GetTenantId()),
			cell(t.GetApp()),
			stateName(t.GetState()),
			timeLeft(now, t.GetExpiresAt(), "expired"),
			timeLeft(now, t.GetNextRefresh(), "due"),
			cell(t.GetLastError()))
	}
	return tw.Flush()
}

// stateName is the lower-case word for a tenant state in the table.
func stateName(s brokerv1.TenantState) string {
	switch s {
	case brokerv1.TenantState_TENANT_STATE_PENDING:
		return "pending"
	case brokerv1.TenantState_TENANT_STATE_READY:
		return "ready"
	case brokerv1.TenantState_TENANT_STATE_DEGRADED:
		return "degraded"
	case brokerv1.TenantState_TENANT_STATE_FAILED:
		return "failed"
	case brokerv1.TenantState_TENANT_STATE_NO_CREDENTIAL:
		return "no-credential"
	default:
		return "unknown"
	}
}

// timeLeft formats the time from now to ts, rounded to the second: "58m12s";
// "-" when ts is unset, past when it has gone by.
func timeLeft(now time.Time, ts *timestamppb.Timestamp, past string) string {
	if ts == nil {
		return "-"
	}
	d := ts.AsTime().Sub(now).Round(time.Second)
	if d <= 0 {
		return past
	}
	return d.String()
}

// cell is s on one line, or "-" when empty.
func cell(s string) string {
	if s = oneLine(s); s == "" {
		return "-"
	}
	return s
}
