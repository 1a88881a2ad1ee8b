package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

func (c *cli) reloadCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make brokerd read its configuration file again",
		Long: `Reload makes brokerd read its configuration file again, as SIGHUP and
systemctl reload brokerd do, and prints what changed once the new
configuration serves:

  - tenants added are fetched at once;
  - tenants removed are dropped, and their watches end;
  - tenants whose tenant id and app (and every setting of the app) are the
    same keep their tokens; their allow lists and domains take effect at
    once, for connections already open too;
  - a tenant whose id or app changed is replaced: its tokens are fetched
    afresh.

authority_host, refresh_before, min_valid, idp_timeout and the allow lists
may change. keystore, credentials_dir, keystore_timeout,
prefetch_concurrency, prefetch_rate, max_idp_requests and [limits] need a
restart: a configuration that changes one of them is refused.

A configuration brokerd cannot use is refused with the reason (the file,
line and key), which brokerd also logs, and the configuration in use keeps
serving. Only root and brokerd's own user may reload.`,
		Example: `  brokerctl reload

  # The system service's (what systemctl reload brokerd runs)
  sudo -u brokerd brokerctl --socket /run/brokerd/brokerd.sock reload`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE:                  action(func(*cobra.Command) error { return c.reload() }),
	}
}

func (c *cli) reload() error {
	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()
	var r *brokerv1.ReloadResponse
	err = c.call(func(ctx context.Context) error {
		r, err = bc.Reload(ctx)
		return err
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprint(c.stdout, reloadSummary(r))
	return err
}

// maxReloadNames bounds the tenants reload names per line; brokerd logs
// the first of them too, and brokerctl tenants lists those configured.
const maxReloadNames = 20

// reloadSummary is what brokerctl reload prints.
func reloadSummary(r *brokerv1.ReloadResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "reloaded %s (configuration %d): %d %s added, %d removed, %d unchanged\n", oneLine(r.GetConfigPath()), r.GetGeneration(),
		len(r.GetAddedTenants()), plural(len(r.GetAddedTenants()), "tenant"), len(r.GetRemovedTenants()), r.GetUnchangedTenants())
	for _, list := range []struct {
		what  string
		names []string
	}{{"added", r.GetAddedTenants()}, {"removed", r.GetRemovedTenants()}} {
		if n := len(list.names); n > 0 {
			more := ""
			if n > maxReloadNames {
				list.names, more = list.names[:maxReloadNames], fmt.Sprintf(" and %d more", n-maxReloadNames)
			}
			fmt.Fprintf(&b, "%s: %s%s\n", list.what, oneLine(strings.Join(list.names, ", ")), more)
		}
	}
	return b.String()
}
