package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tokenbroker/tokenbroker/internal/version"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

func (c *cli) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the versions of brokerctl and of the brokerd it talks to",
		Long: `Version prints how brokerctl was built, then asks brokerd how it was built:
one line each, the program, its module version ("(devel)" for a build from a
checkout), the commit it was built from ("+dirty" when the checkout had
uncommitted changes) and the commit's time, the Go version and the platform.

When brokerd cannot be reached, brokerctl's line is printed all the same,
with the reason on stderr, and the exit status says why (6: brokerd is not
running).`,
		Example: `  brokerctl version

  # The system service's
  brokerctl --socket /run/brokerd/brokerd.sock version`,
		Args:                  cobra.NoArgs,
		DisableFlagsInUseLine: true,
		RunE:                  action(func(*cobra.Command) error { return c.version() }),
	}
}

func (c *cli) version() error {
	if _, err := fmt.Fprintln(c.stdout, "brokerctl", version.Current()); err != nil {
		return err
	}
	bc, err := c.dial()
	if err != nil {
		return err
	}
	defer bc.Close()
	var v *brokerv1.GetVersionResponse
	err = c.call(func(ctx context.Context) error {
		v, err = bc.GetVersion(ctx)
		return err
	})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(c.stdout, "brokerd", oneLine(daemonVersion(v).String()))
	return err
}

// daemonVersion is the build information brokerd sent.
func daemonVersion(v *brokerv1.GetVersionResponse) version.Info {
	i := version.Info{
		Version:   v.GetVersion(),
		Commit:    v.GetCommit(),
		Modified:  v.GetModified(),
		GoVersion: v.GetGoVersion(),
		Platform:  v.GetPlatform(),
	}
	if t := v.GetCommitTime(); t != nil {
		i.Time = t.AsTime()
	}
	return i
}
