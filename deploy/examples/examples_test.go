package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/internal/testpki"
)

// Every example passes the configuration checker. The files an example
// names under /etc/psavd (certificates, keys, records) are created empty in a
// scratch directory, since check verifies that they exist.
func TestExamplesAreSound(t *testing.T) {
	files, err := filepath.Glob("*.toml")
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v %v", files, err)
	}
	etc := t.TempDir()
	ca, err := testpki.NewCA("examples")
	if err != nil {
		t.Fatal(err)
	}
	caPEM := ca.PEM()
	paths := regexp.MustCompile(`"/etc/psavd/([^"]+)"`)
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			text, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range paths.FindAllStringSubmatch(string(text), -1) {
				var content []byte
				if strings.HasSuffix(m[1], "ca.pem") {
					content = caPEM // trust anchors are parsed at check time
				}
				if err := os.WriteFile(filepath.Join(etc, m[1]), content, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			fixed := strings.ReplaceAll(string(text), "/etc/psavd/", etc+"/")
			if _, err := config.Parse(f, []byte(fixed)); err != nil {
				t.Fatalf("%s is refused:\n%v", f, err)
			}
			// And by the real binary, as an operator (or the systemd unit) runs it.
			given := filepath.Join(t.TempDir(), f)
			if err := os.WriteFile(given, []byte(fixed), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(psavdBinary(t), "check", "-config", given).CombinedOutput(); err != nil {
				t.Fatalf("psavd check %s: %v\n%s", f, err, out)
			}
		})
	}
}

// The systemd unit grants the capabilities AF_XDP needs and the memlock
// limit, and checks the configuration before starting.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../systemd/psavd.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_IPC_LOCK", "LimitMEMLOCK=infinity",
		"ExecStartPre=/usr/bin/psavd check", "ExecReload=/bin/kill -HUP", "AF_XDP"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("psavd.service lacks %s", want)
		}
	}
}
