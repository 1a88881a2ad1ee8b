package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/tokenbroker/tokenbroker/internal/version"
)

// Without a brokerd, version prints brokerctl's own line on stdout, the
// reason on stderr, and exits 6 like any call to a brokerd that is not
// running. (Against a real brokerd: cmd/brokerd's TestVersion.)
func TestVersionWithoutDaemon(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "brokerd.sock")
	r := runCLI(t, "", "--socket", sock, "version")
	if want := "brokerctl " + version.Current().String() + "\n"; r.code != exitUnavailable || r.stdout != want {
		t.Errorf("version = %+v, want exit 6 and stdout %q", r, want)
	}
	if !strings.HasPrefix(r.stderr, "brokerctl: Unavailable: no brokerd socket at "+sock) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("stderr = %q, want one line saying there is no brokerd socket", r.stderr)
	}
}
