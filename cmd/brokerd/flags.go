package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
	"github.com/tokenbroker/tokenbroker/broker/client"
)

var usageHeader = `Usage: brokerd [flags]

brokerd keeps an Entra ID app-only access token fresh for every customer tenant
in its configuration and serves them over gRPC on a Unix socket. The app's
client secret stays in the OS keyring (or systemd credentials); callers only
ever see tokens. Use brokerctl to talk to it.

Examples:
  # Try it: an embedded fake Entra ID and demo tenants; talks to nobody.
  brokerd --dev

  # Run with a configuration, on the default socket.
  brokerd --config ~/.config/tokenbroker/brokerd.toml

  # A system daemon whose socket members of group brokerd may open (the
  # tenants' allow lists still decide who gets which token).
  brokerd --config /etc/tokenbroker/brokerd.toml --socket /run/brokerd/brokerd.sock --socket-group brokerd

  # Debug logs (never secrets or tokens), as JSON lines for a log shipper.
  brokerd --dev --log-level debug --log-format json

  # The version, commit and Go toolchain brokerd was built with.
  brokerd --version

Socket: --socket, else ` + client.SocketDefaults(false) + `.

Signals: SIGINT and SIGTERM stop brokerd gracefully; SIGHUP reloads the
configuration file, as brokerctl reload does (a file brokerd refuses is
logged, and the configuration in use keeps serving).

Exit status: 0 after a graceful stop (SIGINT, SIGTERM), 1 when brokerd cannot
serve, 2 for a mistake on the command line or in the configuration.

Flags:
`

// options are brokerd's command-line flags.
type options struct {
	config      string
	socket      string
	socketGroup string
	dev         bool
	logLevel    slog.Level
	logFormat   logFormat
	metricsAddr string
	help        bool
	version     bool
}

// defineFlags defines every flag of brokerd on fs, each writing into o. It
// is the one place a flag is added; the help lists them in this order.
func defineFlags(fs *pflag.FlagSet, o *options) {
	fs.StringVar(&o.config, "config", "",
		"the configuration `FILE`, which only root and brokerd's user may be able to change (default "+defaultConfig()+")")
	fs.StringVar(&o.socket, "socket", "", "the Unix socket `PATH` to listen on (see Socket above)")
	fs.StringVar(&o.socketGroup, "socket-group", "",
		"share the socket with this `GROUP` (name or gid): socket 0660, directory 0750; without it the socket is 0600 in a 0700 directory")
	fs.BoolVar(&o.dev, "dev", false, "development mode: embedded fake Entra ID, demo tenants, in-memory credential")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")
	fs.Lookup("log-level").DefValue = "info" // not slog's INFO
	o.logFormat = logText
	fs.Var(&o.logFormat, "log-format", "log `format`: text (logfmt lines) or json (one JSON object a line, for log shippers)")
	fs.StringVar(&o.metricsAddr, "metrics-listen", "",
		"serve Prometheus metrics at /metrics on `ADDR`: 127.0.0.1:PORT, [::1]:PORT, localhost:PORT or unix:/path (a socket like --socket's); off by default")
	fs.BoolVar(&o.version, "version", false, "print brokerd's version, commit and Go version, and exit")
	fs.BoolVarP(&o.help, "help", "h", false, "show this help and exit")
}

// newFlagSet is brokerd's flag set over o. It prints nothing itself.
func newFlagSet(o *options) *pflag.FlagSet {
	fs := pflag.NewFlagSet("brokerd", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	defineFlags(fs, o)
	return fs
}

// usage is brokerd --help.
func usage() string {
	return usageHeader + newFlagSet(&options{}).FlagUsagesWrapped(100)
}

// usageError is a mistake on the command line: brokerd prints it as one
// line pointing to --help and exits 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// parseFlags parses brokerd's command line. Every error is a *usageError.
func parseFlags(args []string) (*options, error) {
	var o options
	fs := newFlagSet(&o)
	if err := singleDashLongFlag(fs, args); err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, &usageError{err}
	}
	if fs.NArg() > 0 {
		return nil, usageErrorf("unexpected argument %q: brokerd takes flags only", fs.Arg(0))
	}
	if o.dev && o.config != "" {
		return nil, usageErrorf("--dev and --config cannot be combined: dev mode uses its own demo configuration")
	}
	return &o, nil
}

// singleDashLongFlag reports a long flag written with one dash, as Go's
// flag package accepted it (-config), naming its GNU spelling (--config),
// instead of pflag's reading of it as a cluster of one-letter flags.
func singleDashLongFlag(fs *pflag.FlagSet, args []string) error {
	for _, a := range args {
		if a == "--" {
			return nil
		}
		if len(a) <= 2 || a[0] != '-' || a[1] == '-' {
			continue
		}
		name, _, _ := strings.Cut(a[1:], "=")
		if fs.Lookup(name) != nil {
			return usageErrorf("-%s: long flags take two dashes: --%s", name, name)
		}
	}
	return nil
}

// logFormat is the value of --log-format.
type logFormat string

const (
	logText logFormat = "text"
	logJSON logFormat = "json"
)

func (f *logFormat) String() string { return string(*f) }
func (f *logFormat) Type() string   { return "format" }

func (f *logFormat) Set(s string) error {
	switch v := logFormat(strings.ToLower(s)); v {
	case logText, logJSON:
		*f = v
		return nil
	}
	return errors.New("want text or json")
}

// newLogger is brokerd's logger on w, in the format and at the level of o.
func newLogger(o *options, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: o.logLevel}
	if o.logFormat == logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
