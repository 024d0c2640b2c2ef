package main

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestVersionAndHelp: `psavd --version` prints one line, `psavd <version>
// (<commit>, <go version>)`, with what the build set; -h and --help (also a
// subcommand's) print usage and exit 0.
func TestVersionAndHelp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "psavd")
	ld := "-X github.com/psavd/psavd/internal/buildinfo.Version=v9.8.7 -X github.com/psavd/psavd/internal/buildinfo.Commit=0123456789ab"
	if out, err := exec.Command("go", "build", "-ldflags", ld, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^psavd v9\.8\.7 \(0123456789ab, go[^)]+\)\n$`).Match(out) {
		t.Fatalf("--version: %q", out)
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"run", "-h"}, {"check", "-h"}, {"replay", "-h"}} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("psavd %v: %v\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "-config") {
			t.Errorf("psavd %v printed no usage:\n%s", args, out)
		}
	}
	if err := exec.Command(bin, "run", "-bogus").Run(); err == nil {
		t.Error("psavd run -bogus exited 0")
	}
}
