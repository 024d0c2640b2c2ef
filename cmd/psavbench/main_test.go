package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckDefaultScenario lists the shipped default scenario's points
// without running anything.
func TestCheckDefaultScenario(t *testing.T) {
	var out, errs strings.Builder
	if code := run([]string{"-check", "-scenario", "../../bench/scenarios/default.toml"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	if !strings.HasPrefix(out.String(), "default: 11 points, 36 measurements\n") || !strings.Contains(out.String(), "64B v4v6 1M prefixes 1 core(s)") {
		t.Errorf("output:\n%s", out.String())
	}
}

// TestRefusesBadScenario: a broken scenario stops the command before
// anything runs, with file, key and reason for each problem.
func TestRefusesBadScenario(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(path, []byte("name = \"x\"\ncases = [\"psavd-tag\"]\nturbo = true\n[sweep]\nsize = [9000]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errs strings.Builder
	if code := run([]string{"-scenario", path}, &out, &errs); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, want := range []string{path + ": turbo: unknown key", path + ": sweep.size[0]: 9000 is outside 64 … 1500"} {
		if !strings.Contains(errs.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs.String())
		}
	}
	if code := run([]string{"-scenario", filepath.Join(t.TempDir(), "missing.toml")}, &out, &errs); code != 2 {
		t.Errorf("missing file: exit %d, want 2", code)
	}
	if code := run([]string{"-no-such-flag"}, &out, &errs); code != 2 {
		t.Errorf("bad flag: exit %d, want 2", code)
	}
}
