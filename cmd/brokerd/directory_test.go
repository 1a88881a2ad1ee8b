package main_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenbroker/tokenbroker/broker/entratest"
	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// secretVolume lays out a directory as the kubelet lays out a Secret
// volume: each version of the data in a timestamped directory, a ..data
// link to the current one, and one link per key through ..data.
type secretVolume struct {
	t       *testing.T
	dir     string
	version int
}

// write publishes a new version holding files (key -> content), mode 0400,
// the way the kubelet's atomic writer does: a new timestamped directory, a
// ..data_tmp link renamed over ..data, then the old directory removed.
func (v *secretVolume) write(files map[string]string) {
	t := v.t
	t.Helper()
	v.version++
	ts := fmt.Sprintf("..2026_11_28_21_00_%02d.%09d", v.version, v.version)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for key, content := range files {
		if err := os.WriteFile(filepath.Join(v.dir, ts, key), []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	if err := os.Symlink(ts, filepath.Join(v.dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(v.dir, "..data_tmp"), filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for key := range files {
		link := filepath.Join(v.dir, key)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", key), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// keystore = "directory" over a Kubernetes Secret volume: brokerd reads
// the app's file, refuses it while others may read it, and follows a
// rotation in place (here from a client secret to a certificate) without
// a restart and without a failed call.
func TestDirectoryKeystore(t *testing.T) {
	t.Parallel()
	s := newSession(t)
	w := newConfigWorld(t, s, "directory", "0d0d0d0d-0000-4000-8000-00000000d001")
	vol := &secretVolume{t: t, dir: filepath.Join(s.dir, "secrets")}
	if err := os.Mkdir(vol.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	vol.write(map[string]string{w.clientID: w.secret + "\n"})
	w.write(t, fmt.Sprintf("credentials_dir = %q", vol.dir))

	// Readable by others: refused, with the fix, before anything is sent.
	target := filepath.Join(vol.dir, "..data", w.clientID)
	if err := os.Chmod(target, 0o644); err != nil {
		t.Fatal(err)
	}
	w.start(s)
	s.ctl("", "get", "--tenant", "northwind").wantExit(t, 5, "brokerctl: FailedPrecondition: ",
		"not private to brokerd", "mode 0644", "chmod 0400", "defaultMode")
	if n := w.idp.TotalTokenRequests(); n != 0 {
		t.Errorf("%d token requests with a credential file others can read", n)
	}
	s.ctl("new-secret-Q~never-sent", "credential", "set", "--app", "partner").wantExit(t, 5, "read-only", "Kubernetes")

	// Fixed in place: the kubelet publishes the file again with mode 0400.
	vol.write(map[string]string{w.clientID: w.secret + "\n"})
	s.waitStates(map[string]brokerv1.TenantState{
		"northwind": brokerv1.TenantState_TENANT_STATE_READY,
		"woodgrove": brokerv1.TenantState_TENANT_STATE_READY,
	})
	wantTenant(t, s.get("northwind"), w.tenants["northwind"])
	if auths := w.idp.ClientAuths(w.tenants["northwind"]); len(auths) == 0 || auths[len(auths)-1].Method != "secret" {
		t.Fatalf("northwind's token was not acquired with the secret: %+v", auths)
	}

	// Rotated in place to a certificate; the old secret is then revoked.
	cert, _, pem, err := entratest.NewCertificate("tokenbroker directory test", time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	w.idp.AddCertificate(w.clientID, cert)
	vol.write(map[string]string{w.clientID: string(pem)})
	brokertest.WaitFor(t, "both tenants re-acquired with the certificate", func() bool {
		for _, name := range []string{"northwind", "woodgrove"} {
			auths := w.idp.ClientAuths(w.tenants[name])
			if len(auths) == 0 || auths[len(auths)-1].Method != "certificate" {
				return false
			}
		}
		return true
	})
	w.idp.RemoveSecret(w.clientID)
	wantTenant(t, s.get("woodgrove"), w.tenants["woodgrove"])
	r := s.ctl("", "credential", "show", "--app", "partner")
	r.wantExit(t, 0, "certificate", "directory", entratest.Thumbprint(cert))
	st := s.tenants()
	for _, name := range []string{"northwind", "woodgrove"} {
		if st[name].GetState() != brokerv1.TenantState_TENANT_STATE_READY {
			t.Errorf("%s is %v after the rotation: %s", name, st[name].GetState(), st[name].GetLastError())
		}
	}
	if strings.Contains(r.stdout+r.stderr, "PRIVATE KEY") {
		t.Error("credential show prints the key")
	}
	s.checkNoLeaks([]string{w.secret, "new-secret-Q~never-sent", keyBody(pem)}, w.idp.Issued())
}

// keyBody is one line from the middle of the private key in a PEM bundle,
// for leak scans.
func keyBody(pem []byte) string {
	_, key, ok := strings.Cut(string(pem), "PRIVATE KEY-----\n")
	if !ok {
		return "no key in the bundle"
	}
	lines := strings.Split(key, "\n")
	return lines[len(lines)/2]
}
