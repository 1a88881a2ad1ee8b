// Command brokerctl is the command-line client of brokerd, the daemon that
// keeps app-only Entra ID access tokens fresh for every configured customer
// tenant. It talks to brokerd over its Unix socket with package
// broker/client:
//
//	brokerctl get --tenant contoso            # print a token, nothing else
//	brokerctl tenants                          # the state of every tenant
//	brokerctl credential set --app partner     # store a client secret (stdin)
//	brokerctl credential set --app partner --certificate partner.pfx
//	brokerctl credential show --app partner    # kind, thumbprint, expiry
//	brokerctl version                          # brokerctl's and brokerd's builds
//
// Security role: scripts use brokerctl get instead of holding the app's
// client secret. credential set reads the secret from stdin or a no-echo
// prompt, never from the command line, and never prints it; a certificate
// file is read by brokerctl as the invoking user (brokerd never opens a
// path on a caller's behalf), and its key and PKCS#12 password are never
// printed either. Like every
// broker/client caller, brokerctl sends nothing to a socket whose path
// other users control or whose daemon runs as a uid it does not trust
// (--expect-uid, $BROKERD_UID name one more).
//
// Errors are one line on stderr, "brokerctl: " followed by the gRPC status
// code and brokerd's message. The exit status is the class of the failure;
// `brokerctl --help` lists them (exitTable).
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
