// Command brokerctl is the command-line client of brokerd, the daemon that
// keeps app-only Entra ID access tokens fresh for every configured customer
// tenant. It talks to brokerd over its Unix socket with package
// broker/client:
//
//	brokerctl get --tenant contoso            # print a token, nothing else
//	brokerctl tenants                          # the state of every tenant
//	brokerctl credential set --app partner     # store a client secret (stdin)
//
// Security role: scripts use brokerctl get instead of holding the app's
// client secret. credential set reads the secret from stdin or a no-echo
// prompt, never from the command line, and never prints it.
//
// Errors are one line on stderr, "brokerctl: " followed by the gRPC status
// code and brokerd's message. The exit status is the class of the failure:
//
//	0  success
//	1  internal, unknown or other error
//	2  usage error (bad flags or input), or INVALID_ARGUMENT
//	3  NOT_FOUND: the tenant or app is not configured, or the tenant does not exist
//	4  PERMISSION_DENIED or UNAUTHENTICATED
//	5  FAILED_PRECONDITION: a person must act (store or rotate the credential,
//	   grant admin consent)
//	6  UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED, or brokerd is not
//	   running: retry later
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
