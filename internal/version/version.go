// Package version describes how a tokenbroker binary was built: its module
// version, the VCS commit and time it was built from, and the Go toolchain
// and platform, all read from the build information the Go linker embeds
// (runtime/debug.ReadBuildInfo). brokerd --version, brokerctl version and
// brokerd's GetVersion RPC all report it, in the one form String writes.
package version

import (
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Devel is the version of a binary not built from a tagged module version
// (go build in a checkout, go test), or whose build information is missing.
const Devel = "(devel)"

// Info is what is known about a binary's build. Empty fields are unknown.
type Info struct {
	// Version is the main module's version, e.g. v1.2.0, a pseudo-version,
	// or Devel.
	Version string
	// Commit is the VCS revision built (vcs.revision); empty when the build
	// was not made in a VCS checkout or with -buildvcs=false.
	Commit string
	// Modified says the checkout had uncommitted changes (vcs.modified).
	Modified bool
	// Time is the commit's time (vcs.time); zero when unknown.
	Time time.Time
	// GoVersion is the toolchain that built the binary, e.g. go1.26.0.
	GoVersion string
	// Platform is GOOS/GOARCH, e.g. linux/amd64.
	Platform string
}

// Current is the build information of the running binary.
func Current() Info {
	bi, _ := debug.ReadBuildInfo()
	return FromBuildInfo(bi)
}

// FromBuildInfo reads an Info from bi, which may be nil (no build
// information). The platform is the running one's: it is what the binary
// was built for.
func FromBuildInfo(bi *debug.BuildInfo) Info {
	info := Info{Version: Devel, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		return info
	}
	if v := bi.Main.Version; v != "" {
		info.Version = v
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339Nano, s.Value); err == nil {
				info.Time = t.UTC()
			}
		}
	}
	return info
}

// shortCommit is how many hex digits of a commit String shows, as git's
// abbreviated hashes in large repositories.
const shortCommit = 12

// String is the build information in one line, e.g.
//
//	v1.2.0 commit 0123456789ab+dirty (2026-11-28T22:49:00Z) go1.26.0 linux/amd64
//
// with "commit unknown" when the commit is not known, and without the
// time, the Go version or the platform when they are not.
func (i Info) String() string {
	commit := i.Commit
	if len(commit) > shortCommit {
		commit = commit[:shortCommit]
	}
	if commit == "" {
		commit = "unknown"
	}
	if i.Modified {
		commit += "+dirty"
	}
	built := ""
	if !i.Time.IsZero() {
		built = " (" + i.Time.UTC().Format(time.RFC3339) + ")"
	}
	v := i.Version
	if v == "" {
		v = Devel
	}
	return strings.Join(slices.DeleteFunc([]string{v, "commit", commit + built, i.GoVersion, i.Platform},
		func(s string) bool { return s == "" }), " ")
}
