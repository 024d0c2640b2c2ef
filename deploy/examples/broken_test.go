package examples

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// psavdBinary builds cmd/psavd once per test binary.
func psavdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "psavd-examples-"); buildErr != nil {
			return
		}
		if out, err := exec.Command("go", "build", "-o", binDir, "../../cmd/psavd").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/psavd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "psavd")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestBrokenDeploymentsRefused (issue 7, must-show 4) gives every file in
// broken/ to the real `psavd check`. Each file says what is wrong with it in
// `# expect: KEY: REASON` lines; check must exit 1 and print exactly one line
// per expectation, `FILE: KEY: REASON…`, naming the file it was given. Files
// under /etc/psavd are created in a scratch directory, except those a file
// marks `# absent:`.
func TestBrokenDeploymentsRefused(t *testing.T) {
	files, err := filepath.Glob("broken/*.toml")
	if err != nil || len(files) < 8 {
		t.Fatalf("broken examples: %v %v", files, err)
	}
	bin := psavdBinary(t)
	paths := regexp.MustCompile(`"/etc/psavd/([^"]+)"`)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			text, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var expect []string
			absent := map[string]bool{}
			sc := bufio.NewScanner(bytes.NewReader(text))
			for sc.Scan() {
				if e, ok := strings.CutPrefix(sc.Text(), "# expect: "); ok {
					expect = append(expect, e)
				}
				if a, ok := strings.CutPrefix(sc.Text(), "# absent: /etc/psavd/"); ok {
					absent[a] = true
				}
			}
			if len(expect) == 0 || !strings.HasPrefix(string(text), "# Broken on purpose: ") {
				t.Fatal("a broken example must say what is wrong (# Broken on purpose: …) and what check says (# expect: KEY: REASON)")
			}
			dir := t.TempDir()
			etc := filepath.Join(dir, "etc")
			if err := os.Mkdir(etc, 0o755); err != nil {
				t.Fatal(err)
			}
			for _, m := range paths.FindAllStringSubmatch(string(text), -1) {
				if !absent[m[1]] {
					if err := os.WriteFile(filepath.Join(etc, m[1]), nil, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			given := filepath.Join(dir, filepath.Base(f))
			if err := os.WriteFile(given, []byte(strings.ReplaceAll(string(text), "/etc/psavd/", etc+"/")), 0o600); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, "check", "-config", given)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("psavd check: %v, want exit status 1\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
			}
			lines := strings.Split(strings.TrimRight(stderr.String(), "\n"), "\n")
			if len(lines) != len(expect) {
				t.Errorf("%d problems reported, %d expected:\n%s", len(lines), len(expect), stderr.String())
			}
			for _, e := range expect {
				key, reason, _ := strings.Cut(e, ": ")
				found := false
				for _, l := range lines {
					// FILE: KEY: REASON — the reason may go on (and may
					// quote the scratch path, as stat errors do).
					if rest, ok := strings.CutPrefix(l, given+": "+key+": "); ok && strings.Contains(rest, reason) {
						found = true
					}
				}
				if !found {
					t.Errorf("no line %q: %s: %s… in:\n%s", given, key, reason, stderr.String())
				}
			}
		})
	}
}
