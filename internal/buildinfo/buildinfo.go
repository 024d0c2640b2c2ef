// Package buildinfo is what a psavd binary says about itself: the version
// and commit set at build time (make build passes them with -ldflags -X),
// or, without them, what the Go toolchain recorded.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at build time: -X github.com/psavd/psavd/internal/buildinfo.Version=…
// and …/buildinfo.Commit=….
var (
	Version = ""
	Commit  = ""
)

// Info is one binary's build.
type Info struct {
	Version, Commit, GoVersion string
}

// Get returns the build's version ("devel" when none was set), commit
// ("unknown" when neither -X nor the toolchain's VCS stamp gives one) and
// Go version.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && i.Commit == "" && len(s.Value) >= 12 {
				i.Commit = s.Value[:12]
			}
		}
	}
	if i.Version == "" {
		i.Version = "devel"
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	return i
}

// Line is the one line `<prog> --version` prints:
// `psavd v0.3.0 (0123abcd, go1.26.8)`.
func Line(prog string) string {
	i := Get()
	return fmt.Sprintf("%s %s (%s, %s)", prog, i.Version, i.Commit, i.GoVersion)
}
