package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/internal/pathtrust"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// usageError is a mistake on the command line or in the input: exit status
// 2, one line on stderr. seeHelp ends the line with a pointer to the
// command's --help, for mistakes in flags and arguments.
type usageError struct {
	err     error
	seeHelp bool
}

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// flagError reports a bad flag or argument, pointing to --help.
func flagError(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...), seeHelp: true}
}

// inputError reports bad input other than flags (an empty secret, an
// unresolvable socket path); --help would not help.
func inputError(err error) error {
	return &usageError{err: err}
}

// commandError marks an error returned by a command's own code, as opposed
// to one cobra returns for an unknown command, a missing required flag or a
// wrong number of arguments, which are usage errors.
type commandError struct{ err error }

func (e *commandError) Error() string { return e.err.Error() }
func (e *commandError) Unwrap() error { return e.err }

// cli is one invocation of brokerctl: its streams, its global flags and the
// command tree built over them.
type cli struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	now    func() time.Time // for the durations in `tenants`; swapped by tests

	socket    string        // --socket
	expectUID string        // --expect-uid
	timeout   time.Duration // --timeout

	root *cobra.Command
}

// run runs brokerctl with args (without the program name) and returns its
// exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return newCLI(stdin, stdout, stderr).execute(args)
}

// newCLI builds the command tree over the given streams.
func newCLI(stdin io.Reader, stdout, stderr io.Writer) *cli {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr, now: time.Now}
	c.root = c.rootCommand()
	return c
}

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "brokerctl",
		Short: "Get Entra ID access tokens from brokerd and manage brokerd",
		Long: `brokerctl talks to brokerd, the daemon that keeps app-only Entra ID access
tokens fresh for every configured customer tenant, over its Unix socket.
Scripts run "brokerctl get" instead of holding the app's client secret.

The socket is --socket, else ` + client.SocketDefaults(true) + `.
Every call to brokerd must finish within --timeout.

Before sending anything, brokerctl checks that only trusted users control
the socket's path (every directory from / down is owned by root or a trusted
uid and not writable by others; a sticky /tmp only above the socket's own
directory) and that brokerd runs as this user, as root, or as the owner of
a socket directory only root could have made (the system service's
/run/brokerd). To talk to a brokerd run by another user, name that user with
--expect-uid or $BROKERD_UID (a uid or a user name; the flag wins).

` + exitStatusHelp(),
		Example: `  # Print a token for tenant contoso
  brokerctl get --tenant contoso

  # The state of every configured tenant
  brokerctl tenants

  # Talk to the system service
  brokerctl --socket /run/brokerd/brokerd.sock tenants

  # Talk to the brokerd user alice runs (only her own, root's and the system
  # service's are trusted without it)
  brokerctl --socket /home/alice/.brokerd/brokerd.sock --expect-uid alice tenants`,
		SilenceErrors: true, // execute prints errors, as one line
		SilenceUsage:  true, // pointing to --help, not printing it
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if c.timeout <= 0 {
				return flagError("invalid --timeout %v: must be more than 0", c.timeout)
			}
			return nil
		},
	}
	root.SetIn(c.stdin)
	root.SetOut(c.stdout)
	root.SetErr(c.stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return &usageError{err: err, seeHelp: true}
	})

	flags := root.PersistentFlags()
	flags.StringVar(&c.socket, "socket", "",
		"brokerd's Unix socket (default "+client.SocketDefaults(true)+")")
	flags.StringVar(&c.expectUID, "expect-uid", "",
		"also trust a brokerd run by this `UID|USER` (default $BROKERD_UID)")
	flags.DurationVar(&c.timeout, "timeout", 10*time.Second, "how long each call to brokerd may take")

	root.AddCommand(c.getCommand(), c.execCommand(), c.credentialCommand(), c.tenantsCommand(),
		c.consentURLCommand(), c.inspectCommand(), c.versionCommand(), c.reloadCommand())
	return root
}

// action adapts a command's work to cobra, marking its errors as the
// command's own (see commandError).
func action(f func(cmd *cobra.Command) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if err := f(cmd); err != nil {
			return &commandError{err: err}
		}
		return nil
	}
}

// execute runs the command line and reports any error on stderr as one line.
func (c *cli) execute(args []string) int {
	c.root.SetArgs(args)
	cmd, err := c.root.ExecuteC()
	if err == nil {
		return exitOK
	}

	var usage *usageError
	var own *commandError
	var exit *exitCodeError
	switch {
	case errors.As(err, &exit):
		// exec: CMD's status, or why it could not run.
		if exit.err != nil {
			fmt.Fprintf(c.stderr, "brokerctl: %v\n", exit.err)
		}
		return exit.code
	case errors.As(err, &usage):
	case errors.As(err, &own):
		return c.report(err)
	default:
		// cobra's own: unknown command or flag, missing required flag,
		// wrong arguments.
		usage = &usageError{err: err, seeHelp: true}
	}
	msg := usageLine(usage.err.Error())
	if usage.seeHelp {
		path := "brokerctl"
		if cmd != nil {
			path = cmd.CommandPath()
		}
		msg += " (see " + path + " --help)"
	}
	fmt.Fprintf(c.stderr, "brokerctl: %s\n", msg)
	return exitUsage
}

// usageLine makes a usage error one line: cobra's suggestions for an
// unknown command ("\n\nDid you mean this?\n\tget\n") become "; did you
// mean get?", and what the user typed cannot start another line.
func usageLine(msg string) string {
	if before, suggestions, ok := strings.Cut(msg, "\n\nDid you mean this?\n"); ok {
		msg = before + "; did you mean " + strings.Join(strings.Fields(suggestions), " or ") + "?"
	}
	return oneLine(msg)
}

// report prints a command's error as one line and returns its exit status.
// gRPC statuses, from brokerd or from the client, are printed as their code
// and message; the message is brokerd's own and says what to do.
func (c *cli) report(err error) int {
	// Not status.FromError: for a wrapped status it returns the wrapper's
	// text as the message.
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		st := se.GRPCStatus()
		fmt.Fprintf(c.stderr, "brokerctl: %v: %s\n", st.Code(), st.Message())
		return exitStatus(st.Code())
	}
	fmt.Fprintf(c.stderr, "brokerctl: %v\n", err)
	return exitError
}

// dial connects to brokerd on the socket chosen by --socket and the
// environment, trusting the uid of --expect-uid too.
func (c *cli) dial() (*client.Client, error) {
	path, err := client.DialPath(c.socket)
	if err != nil {
		return nil, inputError(err)
	}
	var opts []client.Option
	if c.expectUID != "" {
		uid, err := pathtrust.LookupUID(c.expectUID)
		if err != nil {
			return nil, flagError("invalid --expect-uid %q: %v", c.expectUID, err)
		}
		opts = append(opts, client.WithExpectUID(uid))
	}
	return client.Dial(path, opts...)
}

// call runs one RPC under --timeout. When the timeout is what ended it, the
// error says so.
func (c *cli) call(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	err := f(ctx)
	// The server may report the deadline (gRPC sends it along) a moment
	// before ctx itself expires: count that as the timeout too.
	dl, _ := ctx.Deadline()
	if err != nil && status.Code(err) == codes.DeadlineExceeded && (ctx.Err() != nil || time.Until(dl) < 100*time.Millisecond) {
		// gRPC's own message here ("context deadline exceeded", a stream
		// reset) says nothing a user can act on.
		return status.Errorf(codes.DeadlineExceeded, "brokerd did not answer within --timeout %v (raise --timeout; `brokerctl tenants` shows each tenant's state)", c.timeout)
	}
	return err
}

// completionTimeout bounds the calls shell completion makes: a shell waiting
// for brokerd is worse than no suggestions.
const completionTimeout = 2 * time.Second

// completeFromTenants returns a flag completion function that lists values
// taken from brokerd's tenants, or nothing when brokerd cannot be reached.
func (c *cli) completeFromTenants(values func(ts []*brokerv1.TenantStatus) []cobra.Completion) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		bc, err := c.dial()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		defer bc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), min(c.timeout, completionTimeout))
		defer cancel()
		ts, err := bc.ListTenants(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return values(ts), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeTenantNames completes a --tenant flag with the names of the
// tenants brokerd serves this user, their ids as descriptions.
func (c *cli) completeTenantNames() cobra.CompletionFunc {
	return c.completeFromTenants(func(ts []*brokerv1.TenantStatus) []cobra.Completion {
		var names []cobra.Completion
		for _, t := range ts {
			names = append(names, cobra.CompletionWithDesc(t.GetName(), t.GetTenantId()))
		}
		return names
	})
}

// oneLine makes s safe for one table cell or one line of output: runs of
// white space become one space, and other control characters (a terminal
// escape in a certificate's subject) are written as Go escapes.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
