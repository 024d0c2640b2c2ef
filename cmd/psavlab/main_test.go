package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// psavd lab execs psavlab next to it, passing -psavd with its own path, and
// says what is missing when psavlab is nowhere.
func TestPsavdLabExecsPsavlab(t *testing.T) {
	if testing.Short() {
		t.Skip("builds psavd")
	}
	dir := t.TempDir()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", dir, "./cmd/psavd", "./cmd/psavlab")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	psavd := filepath.Join(dir, "psavd")

	// -h reaches psavlab's flags; -topology of a missing file is psavlab's
	// error, after psavd handed over.
	var stderr bytes.Buffer
	cmd := exec.Command(psavd, "lab", "-h")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stderr.String(), "-psavd") || !strings.Contains(stderr.String(), "-topology") {
		t.Fatalf("psavd lab -h: %v\n%s", err, stderr.String())
	}
	out, err := exec.Command(psavd, "lab", "-topology", filepath.Join(dir, "none.toml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "psavlab: open "+filepath.Join(dir, "none.toml")) {
		t.Fatalf("psavd lab -topology missing: %v\n%s", err, out)
	}

	// Without psavlab next to psavd or in PATH.
	if err := os.Remove(filepath.Join(dir, "psavlab")); err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(psavd, "lab")
	cmd.Env = append(os.Environ(), "PATH="+t.TempDir())
	out, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "psavd lab needs the psavlab binary: make build") {
		t.Fatalf("psavd lab without psavlab: %v\n%s", err, out)
	}
}

// -psavd defaults to the psavd next to psavlab.
func TestDefaultPsavd(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := defaultPsavd(), filepath.Join(filepath.Dir(self), "psavd"); got != want {
		t.Fatalf("defaultPsavd = %q, want %q", got, want)
	}
}
