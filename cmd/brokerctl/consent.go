package main

import (
	"context"
	"net/url"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// consentFlags are the flags of `brokerctl consent-url`.
type consentFlags struct {
	tenant   string // a configured tenant
	app      string // an app, for a tenant not configured yet
	tenantID string // that tenant's id or domain; empty for the common form
}

func (c *cli) consentURLCommand() *cobra.Command {
	var f consentFlags
	cmd := &cobra.Command{
		Use:   "consent-url (--tenant TENANT | [--app APP] [--tenant-id ID|DOMAIN])",
		Short: "Print the admin consent link of a tenant's app",
		Long: `Consent-url prints the link a Global Administrator of a customer tenant opens
to grant the app's permissions in that tenant (admin consent), and nothing
else.

With --tenant, a configured tenant (its name or tenant id), it is that
tenant's link, the one brokerd's consent errors name:
  AUTHORITY/TENANT-ID/adminconsent?client_id=CLIENT-ID
For a tenant not configured yet, name the app with --app (not needed when
brokerd has only one) and the tenant with --tenant-id (its id or one of its
domains); without --tenant-id it is the "common" link, which works for an
administrator of any tenant:
  AUTHORITY/common/adminconsent?client_id=CLIENT-ID
AUTHORITY is the app's Entra ID login host (authority_host). After consent
Entra ID sends the browser to the app's redirect URI, or shows an error page
when the app has none; the consent is granted either way.`,
		Example: `  # The link for configured tenant contoso
  brokerctl consent-url --tenant contoso

  # For a new customer, before adding it to brokerd.toml
  brokerctl consent-url --app partner --tenant-id fabrikam.onmicrosoft.com
  brokerctl consent-url --app partner`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE:                  action(func(*cobra.Command) error { return c.consentURL(f) }),
	}
	flags := cmd.Flags()
	flags.StringVar(&f.tenant, "tenant", "", "a configured tenant: its name or tenant id")
	flags.StringVar(&f.app, "app", "", "the app, for a tenant not configured yet (default: the only app)")
	flags.StringVar(&f.tenantID, "tenant-id", "", "the id or a domain of a tenant not configured yet (default: the common link)")
	cmd.MarkFlagsMutuallyExclusive("tenant", "app")
	cmd.MarkFlagsMutuallyExclusive("tenant", "tenant-id")
	_ = cmd.RegisterFlagCompletionFunc("tenant", c.completeTenantNames())
	return cmd
}

// tenantRefRE is a tenant id or a domain name, as the consent link's path
// takes it.
var tenantRefRE = regexp.MustCompile(`^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63})$`)

func (c *cli) consentURL(f consentFlags) error {
	switch {
	case f.tenant != "" && strings.TrimSpace(f.tenant) == "":
		return flagError("--tenant must not be empty: give the tenant's configured name or tenant id")
	case f.tenantID != "" && !tenantRefRE.MatchString(f.tenantID):
		return flagError("invalid --tenant-id %q: give the tenant's id (a GUID) or one of its domains, e.g. contoso.onmicrosoft.com", oneLine(f.tenantID))
	}

	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()
	var tenants []*brokerv1.TenantStatus
	var apps []*brokerv1.AppStatus
	err = c.call(func(ctx context.Context) error {
		tenants, apps, err = bc.ListTenantsAndApps(ctx)
		return err
	})
	if err != nil {
		return err
	}

	var app *brokerv1.AppStatus
	where := "common"
	if f.tenant != "" {
		t := findTenant(tenants, f.tenant)
		if t == nil {
			return status.Errorf(codes.NotFound, "tenant %q is not among the tenants brokerd lists for you (give its configured name or tenant id, see `brokerctl tenants`; for a tenant not configured yet, use --app and --tenant-id)", oneLine(f.tenant))
		}
		if app = findApp(apps, t.GetApp()); app == nil {
			return status.Errorf(codes.Unimplemented, "brokerd did not report tenant %s's app %s (a brokerd older than this brokerctl?)", t.GetName(), t.GetApp())
		}
		where = t.GetTenantId()
	} else {
		if app, err = chooseApp(apps, f.app); err != nil {
			return err
		}
		if f.tenantID != "" {
			where = strings.ToLower(f.tenantID)
		}
	}
	_, err = c.stdout.Write([]byte(consentLink(app, where) + "\n"))
	return err
}

// consentLink is app's admin consent link for tenant, a tenant id, a
// domain or "common".
func consentLink(app *brokerv1.AppStatus, tenant string) string {
	return strings.TrimRight(app.GetAuthorityHost(), "/") + "/" + tenant + "/adminconsent?client_id=" + url.QueryEscape(app.GetClientId())
}

// findTenant is the tenant of ts named name, by configured name or tenant
// id, or nil.
func findTenant(ts []*brokerv1.TenantStatus, name string) *brokerv1.TenantStatus {
	for _, t := range ts {
		if strings.EqualFold(t.GetName(), name) || strings.EqualFold(t.GetTenantId(), name) {
			return t
		}
	}
	return nil
}

// findApp is the app of apps named name, or nil.
func findApp(apps []*brokerv1.AppStatus, name string) *brokerv1.AppStatus {
	for _, a := range apps {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// chooseApp is the app named name, or the only app when name is empty.
func chooseApp(apps []*brokerv1.AppStatus, name string) (*brokerv1.AppStatus, error) {
	var names []string
	for _, a := range apps {
		names = append(names, a.GetName())
	}
	switch {
	case name != "":
		if a := findApp(apps, name); a != nil {
			return a, nil
		}
		if len(names) == 0 {
			return nil, status.Errorf(codes.NotFound, "app %q is not among the apps brokerd lists for you (none)", oneLine(name))
		}
		return nil, status.Errorf(codes.NotFound, "app %q is not among the apps brokerd lists for you (%s)", oneLine(name), strings.Join(names, ", "))
	case len(apps) == 1:
		return apps[0], nil
	case len(apps) == 0:
		return nil, status.Error(codes.NotFound, "brokerd lists no app for you: give --tenant, or ask brokerd's administrator")
	}
	return nil, flagError("brokerd has several apps (%s): name one with --app", strings.Join(names, ", "))
}
