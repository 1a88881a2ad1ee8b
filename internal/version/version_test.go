package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"a release built from a clean checkout", &debug.BuildInfo{
			GoVersion: "go1.26.0",
			Main:      debug.Module{Path: "github.com/tokenbroker/tokenbroker", Version: "v1.2.0"},
			Settings: []debug.BuildSetting{
				{Key: "vcs", Value: "git"},
				{Key: "vcs.revision", Value: "0745449c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f60"},
				{Key: "vcs.time", Value: "2026-11-28T22:49:00Z"},
				{Key: "vcs.modified", Value: "false"},
			},
		}, "v1.2.0 commit 0745449c1d2e (2026-11-28T22:49:00Z) go1.26.0 " + platform},
		{"a checkout with changes", &debug.BuildInfo{
			GoVersion: "go1.26.0",
			Main:      debug.Module{Path: "github.com/tokenbroker/tokenbroker", Version: "v0.0.0-20261128224900-0745449c1d2e+dirty"},
			Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "0745449c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f60"},
				{Key: "vcs.time", Value: "2026-11-28T23:49:00+01:00"},
				{Key: "vcs.modified", Value: "true"},
			},
		}, "v0.0.0-20261128224900-0745449c1d2e+dirty commit 0745449c1d2e+dirty (2026-11-28T22:49:00Z) go1.26.0 " + platform},
		{"go test or -buildvcs=false", &debug.BuildInfo{GoVersion: "go1.26.0"},
			"(devel) commit unknown go1.26.0 " + platform},
		{"a bad vcs.time and a short revision", &debug.BuildInfo{
			GoVersion: "go1.26.0",
			Main:      debug.Module{Version: "(devel)"},
			Settings:  []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.time", Value: "yesterday"}},
		}, "(devel) commit abc go1.26.0 " + platform},
		{"no build information", nil, "(devel) commit unknown " + runtime.Version() + " " + platform},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FromBuildInfo(tt.bi).String(); got != tt.want {
				t.Errorf("String() = %q\nwant        %q", got, tt.want)
			}
		})
	}
}

// A zero Info, as decoded from a daemon that sent nothing, still prints
// one line that says what is not known.
func TestZeroInfo(t *testing.T) {
	if got, want := (Info{}).String(), "(devel) commit unknown"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// Under go test the binary has build information without a main module
// version.
func TestCurrent(t *testing.T) {
	i := Current()
	if i.Version != Devel || i.GoVersion != runtime.Version() || !strings.Contains(i.String(), runtime.GOOS+"/"+runtime.GOARCH) {
		t.Errorf("Current() = %+v", i)
	}
}
