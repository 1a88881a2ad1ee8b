// Command fakeentra runs the repository's fake Entra ID (broker/entratest)
// as a process of its own, for scripts that test brokerd from outside Go:
// scripts/systemd-test runs it inside a systemd-nspawn container.
//
//	fakeentra -dir DIR -client-id ID -tenant NAME=ID [-tenant NAME=ID...]
//
// It registers app ID with a fresh random client secret and each tenant,
// consented to the app, then writes to DIR: url (the authority host),
// ca.pem (the certificate to trust through SSL_CERT_FILE) and secret (mode
// 0600), and serves until SIGTERM or SIGINT. Its tokens are worthless
// outside of it.
package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
)

type tenants []entratest.Tenant

func (t *tenants) String() string { return fmt.Sprint(len(*t), " tenants") }

func (t *tenants) Set(v string) error {
	name, id, ok := strings.Cut(v, "=")
	if !ok || name == "" || id == "" {
		return errors.New("want NAME=ID")
	}
	*t = append(*t, entratest.Tenant{ID: id, Domains: []string{name + ".onmicrosoft.com"}})
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakeentra:", err)
		os.Exit(1)
	}
}

func run() error {
	var ts tenants
	dir := flag.String("dir", "", "directory to write url, ca.pem and secret to")
	clientID := flag.String("client-id", "", "the app's client id")
	flag.Var(&ts, "tenant", "a consenting tenant, NAME=ID (repeatable)")
	flag.Parse()
	if *dir == "" || *clientID == "" || len(ts) == 0 || flag.NArg() > 0 {
		return errors.New("usage: fakeentra -dir DIR -client-id ID -tenant NAME=ID...")
	}
	srv, err := entratest.NewServer()
	if err != nil {
		return err
	}
	defer srv.Close()
	secret := "fake-secret-" + rand.Text()
	srv.AddApp(*clientID, secret)
	for _, t := range ts {
		t.ConsentedApps = []string{*clientID}
		srv.AddTenant(t)
	}
	// url last: its presence says the others are complete.
	for _, f := range []struct {
		name, data string
		mode       os.FileMode
	}{
		{"secret", secret, 0o600},
		{"ca.pem", string(srv.CertPEM()), 0o644},
		{"url", srv.URL() + "\n", 0o644},
	} {
		if err := os.WriteFile(filepath.Join(*dir, f.name), []byte(f.data), f.mode); err != nil {
			return err
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}
