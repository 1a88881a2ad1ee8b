package main

import (
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
)

// --expect-uid and $BROKERD_UID name a uid or a user; a bad one is a usage
// error before anything is dialled. (The processes of another user that
// they let brokerctl trust are in cmd/brokerd's trust tests.)
func TestExpectUIDInput(t *testing.T) {
	b := &brokertest.FakeBroker{}
	sock := brokertest.Serve(t, b)

	r := runCLI(t, "", "--socket", sock, "--expect-uid", "no-such-user-q", "tenants")
	if r.code != exitUsage || r.stderr != `brokerctl: invalid --expect-uid "no-such-user-q": no user "no-such-user-q" on this system (give a user name or a numeric uid) (see brokerctl tenants --help)`+"\n" {
		t.Errorf("bad --expect-uid: %+v", r)
	}

	// A valid one changes nothing for a daemon trusted anyway.
	for _, v := range []string{"nobody", "65534", "0"} {
		if r := runCLI(t, "", "--socket", sock, "--expect-uid", v, "tenants"); r.code != exitOK {
			t.Errorf("--expect-uid %s: %+v", v, r)
		}
	}

	t.Setenv("BROKERD_UID", "no-such-user-q")
	r = runCLI(t, "", "--socket", sock, "tenants")
	if want := "brokerctl: InvalidArgument: BROKERD_UID=\"no-such-user-q\": no user \"no-such-user-q\" on this system (give a user name or a numeric uid)\n"; r.code != exitUsage || r.stderr != want {
		t.Errorf("bad BROKERD_UID: %+v, want exit 2 and %q", r, want)
	}
	// The flag wins over the environment.
	if r := runCLI(t, "", "--socket", sock, "--expect-uid", "nobody", "tenants"); r.code != exitOK {
		t.Errorf("--expect-uid with a bad BROKERD_UID: %+v", r)
	}
	if n := b.Calls(); n != 4 {
		t.Errorf("brokerd saw %d calls, want 4 (only the runs with valid input)", n)
	}
}

func TestRootHelpDocumentsTrust(t *testing.T) {
	r := runCLI(t, "", "--help")
	for _, want := range []string{"--expect-uid UID|USER", "$BROKERD_UID", "--expect-uid alice", "only root could have made"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("root help lacks %q", want)
		}
	}
}
