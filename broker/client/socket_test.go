package client

import (
	"slices"
	"strings"
	"testing"
)

func TestSocketPathResolution(t *testing.T) {
	long := "/tmp/" + strings.Repeat("s", MaxSocketPath-len("/tmp/")) // exactly MaxSocketPath bytes
	tooLong := long + "x"
	tests := []struct {
		name    string
		flag    string
		env     map[string]string
		uid     int
		want    string
		wantErr []string // substrings of the error; nil means no error
	}{
		{
			name: "flag wins over everything",
			flag: "/flag.sock",
			env:  map[string]string{"BROKERD_SOCKET": "/env.sock", "XDG_RUNTIME_DIR": "/run/user/1000"},
			uid:  1000,
			want: "/flag.sock",
		},
		{
			name: "relative flag kept as given",
			flag: "dev.sock",
			uid:  1000,
			want: "dev.sock",
		},
		{
			name: "env wins over XDG",
			env:  map[string]string{"BROKERD_SOCKET": "/env.sock", "XDG_RUNTIME_DIR": "/run/user/1000"},
			uid:  1000,
			want: "/env.sock",
		},
		{
			name: "env wins over root fallback",
			env:  map[string]string{"BROKERD_SOCKET": "/env.sock"},
			uid:  0,
			want: "/env.sock",
		},
		{
			name: "XDG runtime dir",
			env:  map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"},
			uid:  1000,
			want: "/run/user/1000/brokerd/brokerd.sock",
		},
		{
			name: "XDG runtime dir wins over root fallback",
			env:  map[string]string{"XDG_RUNTIME_DIR": "/run/user/0"},
			uid:  0,
			want: "/run/user/0/brokerd/brokerd.sock",
		},
		{
			name: "root without XDG uses the system socket",
			uid:  0,
			want: "/run/brokerd/brokerd.sock",
		},
		{
			name: "relative XDG runtime dir is ignored",
			env:  map[string]string{"XDG_RUNTIME_DIR": "run/user"},
			uid:  0,
			want: "/run/brokerd/brokerd.sock",
		},
		{
			name:    "non-root without XDG is an error",
			uid:     1000,
			wantErr: []string{"XDG_RUNTIME_DIR is not set", "--socket", "BROKERD_SOCKET"},
		},
		{
			name: "path of exactly MaxSocketPath bytes",
			flag: long,
			uid:  1000,
			want: long,
		},
		{
			name:    "flag too long",
			flag:    tooLong,
			uid:     1000,
			wantErr: []string{tooLong, "108 bytes long", "at most 107 bytes"},
		},
		{
			name:    "env too long",
			env:     map[string]string{"BROKERD_SOCKET": tooLong},
			uid:     1000,
			wantErr: []string{tooLong, "108 bytes long"},
		},
		{
			name:    "XDG result too long",
			env:     map[string]string{"XDG_RUNTIME_DIR": "/" + strings.Repeat("d", 100)},
			uid:     1000,
			wantErr: []string{"/brokerd/brokerd.sock", "122 bytes long"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			got, err := resolveSocketPath(tt.flag, getenv, tt.uid)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("resolveSocketPath() = %q, want an error", got)
				}
				for _, sub := range tt.wantErr {
					if !strings.Contains(err.Error(), sub) {
						t.Errorf("error %q does not contain %q", err, sub)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("resolveSocketPath() error: %v", err)
			}
			if got != tt.want {
				t.Errorf("resolveSocketPath() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestSocketPathReadsEnvironment checks that the exported function reads the
// real environment; the precedence itself is covered above.
func TestSocketPathReadsEnvironment(t *testing.T) {
	t.Setenv("BROKERD_SOCKET", "/env/brokerd.sock")
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/4242")
	if got, err := SocketPath(""); err != nil || got != "/env/brokerd.sock" {
		t.Errorf("SocketPath(\"\") = %q, %v; want /env/brokerd.sock", got, err)
	}
	if got, err := SocketPath("/flag.sock"); err != nil || got != "/flag.sock" {
		t.Errorf("SocketPath(flag) = %q, %v; want /flag.sock", got, err)
	}
	t.Setenv("BROKERD_SOCKET", "")
	if got, err := SocketPath(""); err != nil || got != "/run/user/4242/brokerd/brokerd.sock" {
		t.Errorf("SocketPath(\"\") = %q, %v; want the XDG path", got, err)
	}
}

// A client falls back to the system service's socket, for any user, when
// nothing names a socket and none is at the user path.
func TestDialPathFallback(t *testing.T) {
	const user = "/run/user/1000/brokerd/brokerd.sock"
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	existing := func(paths ...string) func(string) bool {
		return func(p string) bool { return slices.Contains(paths, p) }
	}
	tests := []struct {
		name   string
		flag   string
		getenv func(string) string
		uid    int
		exists func(string) bool
		want   string // "" means an error
	}{
		{"user socket there", "", env("XDG_RUNTIME_DIR", "/run/user/1000"), 1000, existing(user, systemSocket), user},
		{"no user socket: the system one", "", env("XDG_RUNTIME_DIR", "/run/user/1000"), 1000, existing(systemSocket), systemSocket},
		{"no session: the system one", "", env(), 1000, existing(systemSocket), systemSocket},
		{"neither: the user path, to say it is missing", "", env("XDG_RUNTIME_DIR", "/run/user/1000"), 1000, existing(), user},
		{"neither and no session", "", env(), 1000, existing(), ""},
		{"--socket names one: no fallback", "/tmp/x.sock", env(), 1000, existing(systemSocket), "/tmp/x.sock"},
		{"BROKERD_SOCKET names one: no fallback", "", env("BROKERD_SOCKET", "/tmp/y.sock"), 1000, existing(systemSocket), "/tmp/y.sock"},
		{"root", "", env(), 0, existing(), systemSocket},
	}
	for _, tt := range tests {
		got, err := resolveDialPath(tt.flag, tt.getenv, tt.uid, tt.exists)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("%s: %q, want an error", tt.name, got)
		case tt.want == "" && !strings.Contains(err.Error(), systemSocket):
			t.Errorf("%s: error %q does not name %s", tt.name, err, systemSocket)
		case tt.want != "" && (err != nil || got != tt.want):
			t.Errorf("%s: %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

// The macOS defaults (runtime.GOOS "darwin"), which have no
// XDG_RUNTIME_DIR: beside the configuration under $HOME, root's under
// /Library without HOME, and an error naming the way out otherwise.
func TestMacOSSocketPath(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		uid     int
		want    string
		wantErr []string
	}{
		{name: "user", env: map[string]string{"HOME": "/Users/alice"}, uid: 501,
			want: "/Users/alice/Library/Application Support/tokenbroker/brokerd.sock"},
		{name: "XDG_RUNTIME_DIR is not consulted", env: map[string]string{"HOME": "/Users/alice", "XDG_RUNTIME_DIR": "/run/user/501"}, uid: 501,
			want: "/Users/alice/Library/Application Support/tokenbroker/brokerd.sock"},
		{name: "root with HOME", env: map[string]string{"HOME": "/var/root"}, uid: 0,
			want: "/var/root/Library/Application Support/tokenbroker/brokerd.sock"},
		{name: "root without HOME", uid: 0,
			want: "/Library/Application Support/tokenbroker/brokerd.sock"},
		{name: "relative HOME is ignored", env: map[string]string{"HOME": "Users/alice"}, uid: 0,
			want: "/Library/Application Support/tokenbroker/brokerd.sock"},
		{name: "user without HOME", uid: 501, wantErr: []string{"HOME is not set", "--socket", "BROKERD_SOCKET"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := macOSSocketPath(func(k string) string { return tt.env[k] }, tt.uid)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("macOSSocketPath() = %q, want an error", got)
				}
				for _, sub := range tt.wantErr {
					if !strings.Contains(err.Error(), sub) {
						t.Errorf("error %q does not contain %q", err, sub)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("macOSSocketPath() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	// A user name of up to 43 bytes fits macOS's 103-byte sun_path.
	if p, _ := macOSSocketPath(func(string) string { return "/Users/" + strings.Repeat("u", 43) }, 501); len(p) > 103 {
		t.Errorf("the default socket of a 43-byte user name is %d bytes, more than macOS's 103", len(p))
	}
}
