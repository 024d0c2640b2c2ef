package buildinfo

import (
	"regexp"
	"testing"
)

func TestLine(t *testing.T) {
	old, oldC := Version, Commit
	defer func() { Version, Commit = old, oldC }()
	Version, Commit = "v1.2.3", "0123abcd"
	if got := Line("psavd"); !regexp.MustCompile(`^psavd v1\.2\.3 \(0123abcd, go[0-9.]+.*\)$`).MatchString(got) {
		t.Fatalf("Line = %q", got)
	}
	Version, Commit = "", ""
	if got := Get(); got.Version == "" || got.Commit == "" {
		t.Fatalf("empty fields: %+v", got)
	}
}
