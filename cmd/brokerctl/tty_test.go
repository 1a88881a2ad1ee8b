//go:build linux

// The terminal here is a Linux pseudo-terminal (/dev/ptmx, TIOCSPTLCK).

package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenbroker/tokenbroker/internal/brokertest"
	brokerv1 "github.com/tokenbroker/tokenbroker/proto/broker/v1"
)

// openPTY opens a pseudo-terminal: the terminal end brokerctl reads as its
// stdin, and the end a test types on and reads the echo from.
func openPTY(t *testing.T) (typing, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// echoOff waits until the terminal's echo is off: brokerctl is at its
// no-echo prompt.
func echoOff(t *testing.T, tty *os.File) {
	t.Helper()
	for start := time.Now(); ; {
		if time.Since(start) > 10*time.Second {
			t.Fatal("brokerctl did not turn the terminal's echo off in 10s")
		}
		tio, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
		if err != nil {
			t.Error(err)
			return
		}
		if tio.Lflag&unix.ECHO == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// echoed collects what the terminal echoes, from the first typing on.
func echoed(typing *os.File) *syncBuffer {
	var b syncBuffer
	go func() { _, _ = io.Copy(&b, typing) }() // ends when the test closes typing
	return &b
}

// allEchoed types a marker line, once brokerctl has left the terminal as it
// found it (echo on), and waits for its echo: everything typed before has
// been echoed, or not, by then.
func allEchoed(t *testing.T, typing *os.File, echo *syncBuffer) string {
	t.Helper()
	const marker = "end-of-typing"
	if _, err := typing.WriteString(marker + "\n"); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); !strings.Contains(echo.String(), marker); {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("the terminal echoed no %q in 10s: is its echo off?", marker)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return echo.String()
}

// syncBuffer is a bytes.Buffer safe to read while brokerctl writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runOnTTY runs brokerctl with the terminal tty as stdin, and returns its
// result once it has exited.
func runOnTTY(t *testing.T, tty *os.File, args ...string) <-chan result {
	done := make(chan result, 1)
	go func() {
		var stdout, stderr syncBuffer
		c := newCLI(tty, &stdout, &stderr)
		c.now = func() time.Time { return testNow }
		code := c.execute(args)
		done <- result{code: code, stdout: stdout.String(), stderr: stderr.String()}
	}()
	return done
}

// The password of a PKCS#12 file is typed at a prompt that does not echo
// it; a wrong one is refused without repeating it.
func TestCredentialSetPFXPasswordPrompt(t *testing.T) {
	k := testKeys()
	cert := validCert(t, k.a)
	const password = "typed-Pa55word"
	pfx, err := pkcs12.Modern.Encode(k.a, cert, nil, password)
	if err != nil {
		t.Fatal(err)
	}
	f := writeFile(t, "partner.p12", pfx)

	for _, typed := range []string{password, "wrong-Pa55word"} {
		t.Run(typed, func(t *testing.T) {
			typing, tty := openPTY(t)
			b := &brokertest.FakeBroker{SetResp: &brokerv1.SetCredentialResponse{VerifiedWithTenant: "contoso"}}
			echo := echoed(typing)
			done := runOnTTY(t, tty, "--socket", brokertest.Serve(t, b), "credential", "set", "--app", "partner", "--certificate", f)
			echoOff(t, tty)
			if _, err := typing.WriteString(typed + "\n"); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if echoed := allEchoed(t, typing, echo); strings.Contains(echoed, typed) {
				t.Errorf("the terminal echoed the password: %q", echoed)
			}
			if !strings.HasPrefix(r.stderr, "Password for "+f+": \n") {
				t.Errorf("stderr = %q, want the prompt first", r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, typed) {
				t.Errorf("the output contains the password: %+v", r)
			}
			if typed == password {
				if r.code != 0 || len(b.SetRequests()) != 1 || !strings.Contains(r.stdout, "kind:        certificate") {
					t.Errorf("right password: %+v", r)
				}
				return
			}
			if want := "brokerctl: wrong password for the PKCS#12 file " + f + "\n"; r.code != exitUsage || !strings.HasSuffix(r.stderr, want) || b.Calls() != 0 {
				t.Errorf("wrong password: %+v, %d calls; want exit 2, %q and no SetCredential", r, b.Calls(), want)
			}
		})
	}
}

// On a terminal, delete shows the credential and deletes it only when the
// answer is yes.
func TestCredentialDeleteAsks(t *testing.T) {
	for _, answer := range []string{"y", "n", ""} {
		t.Run(fmt.Sprintf("answer %q", answer), func(t *testing.T) {
			typing, tty := openPTY(t)
			b := newCredBroker(certInfo())
			done := runOnTTY(t, tty, "--socket", brokertest.Serve(t, b), "credential", "delete", "--app", "partner")
			if _, err := typing.WriteString(answer + "\n"); err != nil {
				t.Fatal(err)
			}
			r := <-done
			question := "Delete the certificate CN=partner-app (thumbprint 3F2A1B9C0D8E7F6A5B4C3D2E1F0A9B8C7D6E5F4A, in the keyring keystore, expires 2026-03-13 13:00:00 UTC (12 days left)) of app partner? " +
				"Tokens already issued stay valid until they expire; no new ones are acquired until a credential is set again. [y/N] "
			if !strings.HasPrefix(r.stderr, question) {
				t.Errorf("stderr = %q, want the question %q", r.stderr, question)
			}
			gets, dels := b.requests()
			if answer == "y" {
				if r.code != 0 || !strings.HasPrefix(r.stdout, "deleted the certificate CN=partner-app") || len(gets) != 1 || len(dels) != 1 {
					t.Errorf("yes: %+v, GetCredential %v, DeleteCredential %v", r, gets, dels)
				}
				return
			}
			if r.code != exitError || !strings.HasSuffix(r.stderr, "brokerctl: not deleted: the credential of app partner is unchanged\n") || len(dels) != 0 {
				t.Errorf("no: %+v, DeleteCredential %v; want exit 1, not deleted", r, dels)
			}
		})
	}
}
