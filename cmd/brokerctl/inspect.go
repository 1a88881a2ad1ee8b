package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/internal/jwtclaims"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

func (c *cli) inspectCommand() *cobra.Command {
	var tenant string
	cmd := &cobra.Command{
		Use:   "inspect --tenant TENANT",
		Short: "Show the claims of a tenant's current token, without the token",
		Long: `Inspect gets the tenant's current token for its app's scopes from brokerd,
as "get" does, and prints what it says, never the token itself: the tenant
it was issued in (tid), the resource it is for (aud), the app it was issued
to (appid), its application permissions (roles), and when it was issued
(iat) and expires (exp). The claims are read, not verified: the resource
checks the signature.

It warns, on stderr, when the token's tid is not the tenant's id, when its
appid is not the app's client id, or when it lacks a role the app's
apps.NAME.required_roles names (a permission missing from the app
registration, or not consented in the tenant); the claims are printed all
the same, and brokerctl then exits with status 5 (a person must act).`,
		Example:               `  brokerctl inspect --tenant contoso`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE:                  action(func(*cobra.Command) error { return c.inspect(tenant) }),
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant: configured name, tenant id or domain (required)")
	_ = cmd.MarkFlagRequired("tenant")
	_ = cmd.RegisterFlagCompletionFunc("tenant", c.completeTenantNames())
	return cmd
}

// tokenClaims are the claims inspect shows. Entra ID's v1 tokens name the
// app appid, v2 tokens azp.
type tokenClaims struct {
	TID   string   `json:"tid"`
	Aud   string   `json:"aud"`
	AppID string   `json:"appid"`
	AZP   string   `json:"azp"`
	Roles []string `json:"roles"`
	IAT   *float64 `json:"iat"`
	Exp   *float64 `json:"exp"`
}

// decodeClaims reads the payload of a JWT access token. Its errors never
// quote the token.
func decodeClaims(token string) (*tokenClaims, error) {
	var tc tokenClaims
	if err := jwtclaims.Decode(token, &tc); err != nil {
		return nil, fmt.Errorf("brokerd's token %w", err)
	}
	return &tc, nil
}

func (c *cli) inspect(tenant string) error {
	if strings.TrimSpace(tenant) == "" {
		return flagError("--tenant must not be empty: give the tenant's configured name, tenant id or domain")
	}
	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()

	var tok *brokerv1.GetTokenResponse
	var tenants []*brokerv1.TenantStatus
	var apps []*brokerv1.AppStatus
	err = c.call(func(ctx context.Context) error {
		if tok, err = bc.GetToken(ctx, tenant, nil, 0); err != nil {
			return err
		}
		tenants, apps, err = bc.ListTenantsAndApps(ctx)
		return err
	})
	if err != nil {
		return err
	}
	claims, err := decodeClaims(tok.GetAccessToken())
	if err != nil {
		return err
	}
	t := findTenant(tenants, tok.GetTenantId())
	var app *brokerv1.AppStatus
	if t != nil {
		app = findApp(apps, t.GetApp())
	}

	if err := c.printClaims(tok, t, app, claims); err != nil {
		return err
	}
	warnings := inspectWarnings(tok, t, app, claims)
	for _, w := range warnings {
		fmt.Fprintf(c.stderr, "brokerctl: warning: %s\n", w)
	}
	if len(warnings) > 0 {
		return status.Errorf(codes.FailedPrecondition, "the token of tenant %s does not carry what the configuration expects (see the %s above)",
			clean(tenantLabel(tok, t)), plural(len(warnings), "warning"))
	}
	return nil
}

func (c *cli) printClaims(tok *brokerv1.GetTokenResponse, t *brokerv1.TenantStatus, app *brokerv1.AppStatus, tc *tokenClaims) error {
	now := c.now()
	tw := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "tenant\t%s (%s)\n", cell(tenantLabel(tok, t)), cell(tok.GetTenantId()))
	if t != nil {
		appLine := cell(t.GetApp())
		if app != nil {
			appLine += " (" + cell(app.GetClientId()) + ")"
		}
		fmt.Fprintf(tw, "app\t%s\n", appLine)
	}
	fmt.Fprintf(tw, "tid\t%s\n", cell(clean(tc.TID)))
	fmt.Fprintf(tw, "aud\t%s\n", cell(clean(tc.Aud)))
	if tc.AppID != "" || tc.AZP == "" {
		fmt.Fprintf(tw, "appid\t%s\n", cell(clean(tc.AppID)))
	} else {
		fmt.Fprintf(tw, "azp\t%s\n", cell(clean(tc.AZP)))
	}
	roles := make([]string, len(tc.Roles))
	for i, r := range tc.Roles {
		roles[i] = clean(r)
	}
	fmt.Fprintf(tw, "roles\t%s\n", cell(strings.Join(roles, " ")))
	fmt.Fprintf(tw, "iat\t%s\n", claimTime(now, tc.IAT))
	fmt.Fprintf(tw, "exp\t%s\n", claimTime(now, tc.Exp))
	return tw.Flush()
}

// inspectWarnings are what is wrong with the token, for its tenant t and
// app (either nil when brokerd did not report it).
func inspectWarnings(tok *brokerv1.GetTokenResponse, t *brokerv1.TenantStatus, app *brokerv1.AppStatus, tc *tokenClaims) []string {
	var ws []string
	name := clean(tenantLabel(tok, t))
	if !strings.EqualFold(tc.TID, tok.GetTenantId()) {
		ws = append(ws, fmt.Sprintf("the token's tid %q is not tenant %s's id %s", clean(tc.TID), name, tok.GetTenantId()))
	}
	if app == nil {
		return ws
	}
	appID := tc.AppID
	if appID == "" {
		appID = tc.AZP
	}
	if !strings.EqualFold(appID, app.GetClientId()) {
		ws = append(ws, fmt.Sprintf("the token was issued to app %q, not to app %s's client id %s", clean(appID), app.GetName(), app.GetClientId()))
	}
	var missing []string
	for _, r := range app.GetRequiredRoles() {
		if !slices.Contains(tc.Roles, r) {
			missing = append(missing, clean(r))
		}
	}
	if len(missing) > 0 {
		ws = append(ws, fmt.Sprintf("the token lacks %s %s that apps.%s.required_roles names: add the application %s to the app registration and have an administrator of tenant %s grant admin consent again: %s",
			plural(len(missing), "role"), strings.Join(missing, ", "), app.GetName(), plural(len(missing), "permission"), name, consentLink(app, tok.GetTenantId())))
	}
	return ws
}

// tenantLabel names the token's tenant: its configured name, else its id.
func tenantLabel(tok *brokerv1.GetTokenResponse, t *brokerv1.TenantStatus) string {
	if t != nil {
		return t.GetName()
	}
	return tok.GetTenantId()
}

// claimTime formats a NumericDate claim in UTC with the time from now:
// "2026-03-01T12:55:00Z (in 55m0s)"; "-" when absent.
func claimTime(now time.Time, v *float64) string {
	if v == nil {
		return "-"
	}
	at := time.Unix(int64(*v), 0).UTC()
	d := at.Sub(now).Round(time.Second)
	switch {
	case d > 0:
		return fmt.Sprintf("%s (in %s)", at.Format(time.RFC3339), d)
	case d < 0:
		return fmt.Sprintf("%s (%s ago)", at.Format(time.RFC3339), -d)
	}
	return at.Format(time.RFC3339) + " (now)"
}

// clean makes a claim's value safe to print: control and other
// unprintable characters become '?', and it is cut at 200 bytes.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "..."
	}
	return s
}

// plural is noun, with an s unless n is 1.
func plural(n int, noun string) string {
	if n == 1 {
		return noun
	}
	return noun + "s"
}
