// Package testtool finds the outside programs that tests talk to (tshark,
// BIND, kdig, stayrtr, …). Where one is missing a test is skipped and says
// why, so that `go test` works on any machine; but `make test` sets
// PSAVD_REQUIRE_TOOLS=1, and there a missing program fails the test instead:
// the packages come from tools/debian-packages.txt, and a skip there would
// hide a broken install step behind a green run.
package testtool

import (
	"os"
	"os/exec"
	"testing"
)

// RequireEnv is the variable that turns a missing tool from a skip into a
// failure.
const RequireEnv = "PSAVD_REQUIRE_TOOLS"

// Required reports whether missing tools fail tests (make test) rather than
// skip them.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Path returns the path of the program name, looked up on PATH and then in
// the sbin directories (named lives in /usr/sbin). Where it is missing the
// test is skipped, or failed under PSAVD_REQUIRE_TOOLS=1; pkg names the
// Debian package that provides it, for the message.
func Path(t testing.TB, name, pkg string) string {
	t.Helper()
	if p, ok := Find(name); ok {
		return p
	}
	if Required() {
		t.Fatalf("%s not installed (Debian package %s), and %s=1: tools/deps.sh should have installed it", name, pkg, RequireEnv)
	}
	t.Skipf("%s not installed (Debian package %s): skipped", name, pkg)
	return ""
}

// Find looks name up without touching a test: on PATH, then in /usr/sbin
// and /sbin.
func Find(name string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, dir := range []string{"/usr/sbin/", "/sbin/"} {
		if st, err := os.Stat(dir + name); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return dir + name, true
		}
	}
	return "", false
}
