package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
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

When brokerd reports its apps' credentials, a second table follows: APP,
CREDENTIAL (secret, certificate or assertion_file), THUMBPRINT (a
certificate's SHA-1 thumbprint, shortened) and EXPIRES (the date and days
left; "unknown" for a secret stored without --expires), then a WARNING line
for each credential that has expired or expires within 30 days, and for
each app whose last keystore call failed (a locked or unreachable keyring,
a credential file brokerd refuses), with the fix. brokerd tells only root
and its own user.

--output json prints brokerd's ListTenantsResponse (tenants, and apps with
their credentials) as protobuf JSON with its snake_case field names (fields
with zero values are left out), for scripts: indented by two spaces, the
same bytes from every build of brokerctl.`,
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
	var apps []*brokerv1.AppStatus
	err = c.call(func(ctx context.Context) error {
		ts, apps, err = bc.ListTenantsAndApps(ctx)
		return err
	})
	if err != nil {
		return err
	}

	if output == outputJSON {
		return c.printTenantsJSON(ts, apps)
	}
	if err := c.printTenantsTable(ts); err != nil {
		return err
	}
	return c.printAppCredentials(apps)
}

func (c *cli) printTenantsJSON(ts []*brokerv1.TenantStatus, apps []*brokerv1.AppStatus) error {
	out, err := protojson.MarshalOptions{UseProtoNames: true}.
		Marshal(&brokerv1.ListTenantsResponse{Tenants: ts, Apps: apps})
	if err != nil {
		return fmt.Errorf("encoding the tenants as JSON: %w", err)
	}
	// protojson varies its white space from build to build on purpose;
	// scripts diffing the output need the same bytes from every build.
	var b bytes.Buffer
	if err := json.Indent(&b, out, "", "  "); err != nil {
		return fmt.Errorf("encoding the tenants as JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err = c.stdout.Write(b.Bytes())
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

// printAppCredentials prints the apps' credentials after the tenants
// table, and a warning for each that has expired or expires soon, and for
// each app whose last keystore call failed. It prints nothing when brokerd
// reports neither (a brokerd that does not, or a caller it does not tell).
func (c *cli) printAppCredentials(apps []*brokerv1.AppStatus) error {
	if !slices.ContainsFunc(apps, func(a *brokerv1.AppStatus) bool { return a.GetCredential() != nil || a.GetCredentialError() != "" }) {
		return nil
	}
	now := c.now()
	var warnings []string
	fmt.Fprintln(c.stdout)
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "APP\tCREDENTIAL\tTHUMBPRINT\tEXPIRES")
	for _, a := range apps {
		cred := a.GetCredential()
		kind, expires := "-", "-"
		if cred != nil {
			kind, expires = kindName(cred.GetKind()), "unknown"
		}
		if exp := cred.GetExpiresAt(); exp != nil {
			expires = shortExpiry(now, exp.AsTime())
			if left := exp.AsTime().Sub(now); left <= 0 {
				warnings = append(warnings, fmt.Sprintf("WARNING: the %s of app %s EXPIRED on %s: its tenants fail once their cached tokens run out; rotate it with `brokerctl credential set --app %s`",
					kindName(cred.GetKind()), oneLine(a.GetName()), exp.AsTime().UTC().Format(time.DateOnly), oneLine(a.GetName())))
			} else if left <= expiryWarning {
				warnings = append(warnings, fmt.Sprintf("WARNING: the %s of app %s expires on %s (%s): rotate it with `brokerctl credential set --app %s`",
					kindName(cred.GetKind()), oneLine(a.GetName()), exp.AsTime().UTC().Format(time.DateOnly), daysText(daysLeft(now, exp.AsTime())), oneLine(a.GetName())))
			}
		}
		if e := a.GetCredentialError(); e != "" {
			warnings = append(warnings, fmt.Sprintf("WARNING: app %s: %s", oneLine(a.GetName()), oneLine(e)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", cell(a.GetName()), kind, shortThumbprint(cred.GetThumbprintSha1()), expires)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(warnings) > 0 {
		fmt.Fprintln(c.stdout)
	}
	for _, w := range warnings {
		if _, err := fmt.Fprintln(c.stdout, w); err != nil {
			return err
		}
	}
	return nil
}

// shortExpiry is "2027-03-01 (365 days left)" for the apps table.
func shortExpiry(now, exp time.Time) string {
	d := daysLeft(now, exp)
	if d < 0 || !exp.After(now) {
		return exp.UTC().Format(time.DateOnly) + " (EXPIRED)"
	}
	return exp.UTC().Format(time.DateOnly) + " (" + daysText(d) + ")"
}

// daysText is "12 days left", or "less than a day left".
func daysText(days int) string {
	if days == 0 {
		return "less than a day left"
	}
	return fmt.Sprintf("%d %s left", days, plural(days, "day"))
}

// shortThumbprint is a thumbprint's first 8 hex digits, enough to tell
// certificates apart at a glance; "-" when there is none.
func shortThumbprint(tp string) string {
	if len(tp) <= 8 {
		return cell(tp)
	}
	return tp[:8] + "..."
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
