package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/psavd/psavd/internal/testtool"
)

// make install DESTDIR=… PREFIX=/usr/local puts every file under the prefix
// (the configuration example under /etc), and the installed unit names the
// installed psavd and still verifies.
func TestMakeInstall(t *testing.T) {
	mk := testtool.Path(t, "make", "make")
	bin := binaries(t)
	dest := t.TempDir()
	cmd := exec.Command(mk, "--no-print-directory", "install", "DESTDIR="+dest, "PREFIX=/usr/local", "BIN="+bin)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"usr/local/bin/psavd", "usr/local/bin/psavctl",
		"usr/local/lib/systemd/system/psavd.service", "usr/local/lib/sysusers.d/psavd.conf",
		"etc/psavd/engine.toml.example", "usr/local/share/doc/psavd/README.md",
		"usr/local/share/doc/psavd/config.md", "usr/local/share/doc/psavd/wire.md",
		"usr/local/share/doc/psavd/copyright",
		"usr/local/share/man/man1/psavctl.1.gz", "usr/local/share/man/man1/psavctl-record-new.1.gz",
		"usr/local/share/bash-completion/completions/psavctl", "usr/local/share/zsh/site-functions/_psavctl",
		"usr/local/share/fish/vendor_completions.d/psavctl.fish"} {
		if _, err := os.Stat(filepath.Join(dest, f)); err != nil {
			t.Errorf("make install: %v", err)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "usr/local/lib/systemd/system/psavd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nExecStart=/usr/local/bin/psavd -config /etc/psavd/engine.toml\n",
		"\nExecStartPre=/usr/local/bin/psavd check -config /etc/psavd/engine.toml\n"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the installed unit lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(string(unit), unitBinary) {
		t.Errorf("the installed unit still names %s", unitBinary)
	}

	sa := testtool.Path(t, "systemd-analyze", "systemd")
	staged := filepath.Join(t.TempDir(), "psavd.service")
	fixed := strings.ReplaceAll(string(unit), "/usr/local/bin/psavd", filepath.Join(dest, "usr/local/bin/psavd"))
	if err := os.WriteFile(staged, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", staged).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
	}
}
