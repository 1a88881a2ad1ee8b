package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tokenbroker/tokenbroker/broker"
	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/keystore"
)

// The demo world of brokerd --dev. None of these ids exist at Microsoft.
const (
	devApp      = "partner"
	devClientID = "d0d0d0d0-0000-4000-8000-000000000001"
	devSecret   = "dev-secret-not-for-production"
)

var devTenants = []struct {
	name, id, domain string
	consented        bool
}{
	{"contoso", "c0c0c0c0-0000-4000-8000-000000000001", "contoso.onmicrosoft.com", true},
	{"fabrikam", "fabfabfa-0000-4000-8000-000000000002", "fabrikam.onmicrosoft.com", true},
	{"tailspin", "7a157a15-0000-4000-8000-000000000003", "tailspin.onmicrosoft.com", false},
}

// dev is the embedded fake Entra ID and the configuration that points at it.
type dev struct {
	idp  *entratest.Server
	cfg  *broker.Config
	opts broker.Options
	// certFile holds a certificate and key registered on the demo app, to
	// try `credential set --certificate` with; removed by close.
	certDir, certFile string
}

// startDev starts the fake Entra ID on loopback TLS with the demo tenants
// and returns a configuration and an in-memory keystore holding the demo
// secret. The fake's certificate is trusted through the HTTP client handed
// to the broker, not through any option a configuration could set.
func startDev() (*dev, error) {
	idp, err := entratest.NewServer()
	if err != nil {
		return nil, fmt.Errorf("starting the fake Entra ID: %w", err)
	}
	idp.AddApp(devClientID, devSecret)
	for _, t := range devTenants {
		et := entratest.Tenant{ID: t.id, Domains: []string{t.domain}}
		if t.consented {
			et.ConsentedApps = []string{devClientID}
		}
		idp.AddTenant(et)
	}
	cfg, err := broker.ParseConfig("dev.toml", []byte(devConfig(idp.URL())))
	if err != nil {
		idp.Close()
		return nil, fmt.Errorf("dev configuration: %w", err)
	}
	store := keystore.NewMemory()
	if err := store.Set(context.Background(), devClientID, keystore.NewSecret(devSecret)); err != nil {
		idp.Close()
		return nil, err
	}
	d := &dev{idp: idp, cfg: cfg, opts: broker.Options{Store: store, HTTPClient: idp.Client()}}
	if err := d.writeCertificate(); err != nil {
		idp.Close()
		return nil, err
	}
	return d, nil
}

// writeCertificate registers a fresh certificate on the demo app and
// writes it, with its key, to a private temporary file.
func (d *dev) writeCertificate() error {
	now := time.Now()
	cert, _, pem, err := entratest.NewCertificate("tokenbroker dev certificate", now.Add(-time.Hour), now.Add(60*24*time.Hour))
	if err != nil {
		return fmt.Errorf("dev certificate: %w", err)
	}
	d.idp.AddCertificate(devClientID, cert)
	if d.certDir, err = os.MkdirTemp("", "brokerd-dev-"); err != nil {
		return fmt.Errorf("dev certificate: %w", err)
	}
	d.certFile = filepath.Join(d.certDir, "dev-certificate.pem")
	if err := os.WriteFile(d.certFile, pem, 0o600); err != nil {
		os.RemoveAll(d.certDir)
		return fmt.Errorf("dev certificate: %w", err)
	}
	return nil
}

func (d *dev) close() {
	d.idp.Close()
	os.RemoveAll(d.certDir)
}

// devConfig is the TOML of the demo configuration: the demo app and
// tenants at the fake Entra ID at idpURL, and the in-memory keystore.
func devConfig(idpURL string) string {
	var doc strings.Builder
	fmt.Fprintf(&doc, "authority_host = %q\nkeystore = \"memory\"\n\n[apps.%s]\nclient_id = %q\n", idpURL, devApp, devClientID)
	for _, t := range devTenants {
		fmt.Fprintf(&doc, "\n[tenants.%s]\nid = %q\napp = %q\ndomains = [%q]\n", t.name, t.id, devApp, t.domain)
	}
	return doc.String()
}

// printDevBanner tells the user, like `vault server -dev`, what is running
// and what to try.
func printDevBanner(w io.Writer, socket string, explicit bool, idpURL, certFile string) {
	ctl := "brokerctl"
	if explicit {
		ctl = "brokerctl --socket " + socket
	}
	fmt.Fprintf(w, `
==> brokerd is running in DEV MODE. It does NOT talk to Microsoft.
    Tokens come from an embedded fake Entra ID at %s,
    the credential lives in memory only, and everything is gone on exit.

    Socket: %s
    App:    %s (client id %s)
    Tenants: contoso, fabrikam (consented), tailspin (not consented)

==> Try, in another terminal:
    %s get --tenant contoso
    %s tenants
    %s get --tenant tailspin          # shows the admin-consent error
    echo -n %s | %s credential set --app %s
    %s credential set --app %s --certificate %s
    %s credential show --app %s

Stop with Ctrl-C. Started %s.
`, idpURL, socket, devApp, devClientID, ctl, ctl, ctl, devSecret, ctl, devApp, ctl, devApp, certFile, ctl, devApp,
		time.Now().Format(time.RFC3339))
}
