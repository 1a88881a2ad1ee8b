// Command brokerd is the tokenbroker daemon: it keeps an Entra ID app-only
// access token fresh for every configured customer tenant and serves them to
// local processes over gRPC on a Unix socket. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/client"
	"github.com/tokenbroker/tokenbroker/broker/server"
	"github.com/tokenbroker/tokenbroker/internal/pathtrust"
	"github.com/tokenbroker/tokenbroker/internal/version"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// configError is a configuration brokerd cannot use: missing, unreadable or
// invalid. Like a command-line mistake it exits 2, but without the usage.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); {
	case err == nil:
	case errors.As(err, new(*usageError)):
		fmt.Fprintf(os.Stderr, "brokerd: %v (see brokerd --help)\n", err)
		os.Exit(2)
	case errors.As(err, new(*configError)):
		fmt.Fprintln(os.Stderr, "brokerd:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "brokerd:", err)
		os.Exit(1)
	}
}

// run is brokerd: it returns when ctx is cancelled (SIGINT, SIGTERM) after a
// graceful stop, or with the error that kept it from serving. SIGHUP
// reloads the configuration.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Caught from the start: a SIGHUP must never stop brokerd. One that
	// comes before brokerd serves is acted on once it does.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	switch {
	case o.help:
		_, err := fmt.Fprint(stdout, usage())
		return err
	case o.version:
		_, err := fmt.Fprintln(stdout, "brokerd", version.Current())
		return err
	}
	log := newLogger(o, stderr)
	// Like ssh-agent: other processes of the same user may not attach
	// to brokerd or read its memory, where secrets and tokens live.
	if err := denyTracing(); err != nil {
		return err
	}
	gid, err := socketGroup(o.socketGroup)
	if err != nil {
		return err
	}

	mx, err := openMetrics(o.metricsAddr, gid)
	if err != nil {
		return err
	}
	defer mx.close()

	var (
		cfg        *broker.Config
		configPath string
		bopt       broker.Options
		devCerts   string
	)
	if o.dev {
		d, err := startDev()
		if err != nil {
			return err
		}
		defer d.close()
		cfg, bopt, devCerts = d.cfg, d.opts, d.certFile
	} else {
		if configPath, err = configFile(o.config); err != nil {
			return err
		}
		if cfg, err = loadConfig(configPath); err != nil {
			return err
		}
		if bopt.Store, err = keystore.Open(cfg.Keystore(), keystore.Options{Dir: cfg.CredentialsDir(), Timeout: cfg.KeystoreTimeout()}); err != nil {
			return err
		}
		bopt.KeystoreTimeout = cfg.KeystoreTimeout()
	}
	bopt.Logger = log
	bopt.Observer = mx.brokerObserver()
	b, err := broker.New(cfg, bopt)
	if err != nil {
		return err
	}
	defer b.Close()

	l, activated, err := listen(o, gid)
	if err != nil {
		return err
	}
	path := l.Addr().String()
	notify := newNotifier(b, log)
	rl := &reloader{path: configPath, b: b, log: log, notify: notify, mx: mx}
	sopts := mx.serverOptions()
	if !o.dev {
		sopts = append(sopts, server.WithReloader(rl.reload))
	}
	gs := server.New(b, log, sopts...)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(l) }()
	b.Start()
	mx.serve(b, gs, log)
	log.Info("brokerd serving", "socket", path, "socket_activated", activated, "tenants", cfg.NumTenants(),
		"keystore", bopt.Store.Name(), "dev", o.dev)
	stopNotify := notify.start(ctx)
	defer stopNotify()
	if o.dev {
		// brokerctl needs --socket unless it finds this socket by itself.
		def, err := client.SocketPath("")
		printDevBanner(stdout, path, err != nil || def != path, cfg.AuthorityHost(), devCerts)
	}

	// SIGHUP reloads off this loop, so that SIGTERM is acted on whatever a
	// reload does; signals that come during a reload make one more. The
	// reloader ends before the broker closes (defers run last first).
	reloads := make(chan struct{}, 1)
	rctx, rcancel := context.WithCancel(ctx)
	reloaderDone := make(chan struct{})
	defer func() { rcancel(); <-reloaderDone }()
	go func() {
		defer close(reloaderDone)
		for {
			select {
			case <-rctx.Done():
				return
			case <-reloads:
				if rctx.Err() != nil {
					return
				}
				log.Info("SIGHUP: reloading the configuration", "config", configPath)
				_, _, _ = rl.reload(rctx) // logged by reload
			}
		}
	}()
	for done := false; !done; {
		select {
		case err := <-served:
			return fmt.Errorf("serving on %s: %w", path, err)
		case <-hup:
			if o.dev {
				log.Warn("SIGHUP ignored: brokerd --dev has no configuration file to reload")
				continue
			}
			select {
			case reloads <- struct{}{}:
			default: // one is due already
			}
		case <-ctx.Done():
			done = true
		}
	}
	stopNotify() // nothing is sent after STOPPING=1
	log.Info("brokerd stopping")
	_, _ = daemon.SdNotify(false, daemon.SdNotifyStopping)
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
	}
	return nil
}

// listen returns the socket systemd passed (socket activation: the .socket
// unit owns the path and its permissions), or creates one where --socket,
// BROKERD_SOCKET or the default say.
func listen(o *options, gid int) (net.Listener, bool, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, false, fmt.Errorf("socket activation: %w", err)
	}
	switch len(ls) {
	case 0:
	case 1:
		if ls[0] == nil || ls[0].Addr().Network() != "unix" {
			return nil, false, errors.New("socket activation: the passed socket is not a Unix stream socket (use ListenStream=/path in the .socket unit)")
		}
		return ls[0], true, nil
	default:
		return nil, false, fmt.Errorf("socket activation: %d sockets passed, want 1", len(ls))
	}
	path, err := client.SocketPath(o.socket)
	if err != nil && o.dev && o.socket == "" && os.Getenv("BROKERD_SOCKET") == "" {
		// Like `vault server -dev`, dev mode should just start: without
		// XDG_RUNTIME_DIR, use a private directory under the temp dir.
		path, err = filepath.Join(os.TempDir(), fmt.Sprintf("brokerd-dev-%d", os.Getuid()), "brokerd.sock"), nil
	}
	if err != nil {
		return nil, false, err
	}
	l, err := server.Listen(path, gid)
	return l, false, err
}

// socketGroup resolves --socket-group (a name or a gid).
func socketGroup(name string) (int, error) {
	if name == "" {
		return server.OwnerOnly, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		if g, err = user.LookupGroupId(name); err != nil {
			return 0, fmt.Errorf("--socket-group: no group %q on this system", name)
		}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("--socket-group: group %q has gid %q", name, g.Gid)
	}
	return gid, nil
}

// configFile is --config, or the default location when it is empty; an
// error is a *configError.
func configFile(path string) (string, error) {
	if path != "" {
		return path, nil
	}
	path = defaultConfig()
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return "", &configError{fmt.Errorf("no configuration at %s: write one (see README.md, systemd/brokerd.toml.example), pass --config, or try brokerd --dev", path)}
	}
	return path, nil
}

// loadConfig reads the configuration file at path, once its trust is
// checked. Every error is a *configError.
func loadConfig(path string) (*broker.Config, error) {
	if err := checkConfigTrust(path); err != nil {
		return nil, &configError{err}
	}
	cfg, err := broker.LoadConfig(path)
	if err != nil {
		return nil, &configError{err}
	}
	return cfg, nil
}

// checkConfigTrust refuses a configuration file that anyone but root and
// brokerd's own user could change, or could have replaced: it chooses the
// authority host the client secret is sent to. The file and every directory
// above it are checked as OpenSSH checks authorized_keys (pathtrust). A
// missing file, or directory, is an error too: one that appears after the
// check could be anyone's.
func checkConfigTrust(path string) error {
	euid := uint32(os.Geteuid())
	_, err := pathtrust.File(path, pathtrust.Policy{Trusted: []uint32{euid}, PrivateTarget: true})
	var pe *pathtrust.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("config: no configuration file at %s: %w", path, err)
	case errors.As(err, &pe):
		who := "root"
		if euid != 0 {
			who += " and brokerd's user, " + pathtrust.DescribeUID(euid) + ","
		}
		return fmt.Errorf("refusing the configuration %s: %w (it decides where the client secret is sent, so only %s may be able to change it)", path, err, who)
	default:
		return fmt.Errorf("checking who may change the configuration %s: %w", path, err)
	}
}

// defaultConfig is $XDG_CONFIG_HOME/tokenbroker/brokerd.toml (~/.config when
// unset), or /etc/tokenbroker/brokerd.toml for root.
func defaultConfig() string {
	if os.Getuid() == 0 {
		return "/etc/tokenbroker/brokerd.toml"
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "tokenbroker", "brokerd.toml")
	}
	return "brokerd.toml"
}
