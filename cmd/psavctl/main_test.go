package main

import (
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The real binary, with the vectors of docs/wire.md §3.4, prints what §4.2 says:
// the index alone on the first line, the name on the second.
func TestDecentIndexCommand(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "psavctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, c := range []struct {
		mode, mask, modulus, eid, want string
	}{
		{"draft", "8", "16", "[0]240.0.1.0/24", "8\n8.map-server.example.test\n"},
		{"draft", "8", "16", "[0]240.0.1.1/32", "8\n8.map-server.example.test\n"},
		{"draft", "0", "8", "[0]10.1.0.0/16", "4\n4.map-server.example.test\n"},
		{"draft", "0", "16", "[0]2001:db8::/32", "12\n12.map-server.example.test\n"},
		{"lispers.net", "0", "16", "[0]240.0.1.0/24", "15\n15.map-server.example.test\n"},
		{"lispers.net", "0", "4", "[0]10.1.0.0/16", "1\n1.map-server.example.test\n"},
		{"lispers.net", "0", "16", "[0]2001:db8::/32", "6\n6.map-server.example.test\n"},
	} {
		out, err := exec.Command(bin, "decent", "index", "-mode", c.mode, "-mask", c.mask, "-modulus", c.modulus,
			"-suffix", "map-server.example.test", c.eid).Output()
		if err != nil {
			t.Fatalf("%v: %v", c, err)
		}
		if string(out) != c.want {
			t.Errorf("%s %s mod %s: got %q, want %q", c.mode, c.eid, c.modulus, out, c.want)
		}
	}
	if err := exec.Command(bin, "decent", "index", "-modulus", "0", "-suffix", "x", "[0]1.0.0.0/8").Run(); err == nil {
		t.Error("modulus 0 accepted")
	}
	var stderr strings.Builder
	cmd := exec.Command(bin, "nonsense")
	cmd.Stderr = &stderr
	if cmd.Run() == nil || !strings.Contains(stderr.String(), "usage") {
		t.Error("unknown command not refused with usage")
	}
}

// TestVersionAndHelp: --version prints the one version line; -h (also a
// subcommand's) exits 0, an unknown flag 2.
func TestVersionAndHelp(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"--version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "psavctl ") || strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("--version: %d %q %q", code, out.String(), errb.String())
	}
	for _, args := range [][]string{{"-h"}, {"--help"}, {"dns", "-h"}, {"status", "-h"}, {"counters", "-h"}, {"decent", "index", "-h"}} {
		if code := run(args, io.Discard, io.Discard); code != 0 {
			t.Errorf("psavctl %v: exit %d", args, code)
		}
	}
	if code := run([]string{"dns", "-bogus"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("psavctl dns -bogus: exit %d", code)
	}
}
