package packaging

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/psavd/psavd/internal/testtool"
)

const (
	root     = "../.."
	unitFile = "../systemd/psavd.service"
	// The .deb's path of psavd, which the unit names.
	unitBinary = "/usr/bin/psavd"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds psavd and psavctl once for the package's tests and returns
// the directory holding them.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "psavd-packaging-"); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir, "./cmd/psavd", "./cmd/psavctl")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/psavd ./cmd/psavctl: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

var (
	generateOnce sync.Once
	generateErr  error
)

// generated runs make man completion over the built binaries (as make deb
// does before nfpm): psavctl's man pages in bin/man, its completions in
// bin/completion. It returns the binaries' directory.
func generated(t *testing.T) string {
	t.Helper()
	bin := binaries(t)
	mk := testtool.Path(t, "make", "make")
	generateOnce.Do(func() {
		cmd := exec.Command(mk, "--no-print-directory", "man", "completion", "BIN="+bin)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			generateErr = fmt.Errorf("make man completion: %v\n%s", err, out)
		}
	})
	if generateErr != nil {
		t.Fatal(generateErr)
	}
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// testUnit writes the unit into a directory of its own, with its binary path
// pointing at the freshly built psavd (verify refuses a unit whose ExecStart
// does not exist), and returns its path.
func testUnit(t *testing.T) string {
	t.Helper()
	text, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(text), "ExecStart="+unitBinary+" ") {
		t.Fatalf("psavd.service: ExecStart is not %s (the .deb's path, which make install rewrites)", unitBinary)
	}
	fixed := strings.ReplaceAll(string(text), unitBinary, filepath.Join(binaries(t), "psavd"))
	path := filepath.Join(t.TempDir(), "psavd.service")
	if err := os.WriteFile(path, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// systemd-analyze verify accepts the unit: every directive known to
// systemd 252, every command executable, no dependency missing.
func TestUnitVerifies(t *testing.T) {
	sa := testtool.Path(t, "systemd-analyze", "systemd")
	unit := testUnit(t)
	out, err := exec.Command(sa, "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify psavd.service: %v\n%s", err, out)
	}
}

var exposure = regexp.MustCompile(`Overall exposure level for psavd\.service: ([0-9.]+)`)

// The unit's sandbox: systemd-analyze security rates it at most MaxExposure,
// and it has the readiness protocol and capabilities psavd relies on.
func TestUnitSecurity(t *testing.T) {
	sa := testtool.Path(t, "systemd-analyze", "systemd")
	unit := testUnit(t)
	out, err := exec.Command(sa, "security", "--offline=yes", "--no-pager", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := exposure.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no overall exposure level:\n%s", out)
	}
	level, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	if level > MaxExposure {
		t.Errorf("exposure level %.1f, want at most %.1f:\n%s", level, MaxExposure, out)
	}
	t.Logf("exposure level %.1f", level)

	text, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	caps := "CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_IPC_LOCK CAP_NET_BIND_SERVICE"
	for _, want := range []string{"Type=notify", "NotifyAccess=main", "ExecReload=/bin/kill -HUP $MAINPID",
		"User=psavd", "AmbientCapabilities=" + caps, "CapabilityBoundingSet=" + caps,
		"SystemCallFilter=@system-service @network-io bpf", "LimitMEMLOCK=infinity"} {
		if !strings.Contains(string(text), "\n"+want+"\n") {
			t.Errorf("psavd.service lacks the line %s", want)
		}
	}
}

// The sysusers.d entry creates the psavd user and group the unit runs as.
func TestSysusers(t *testing.T) {
	text, err := os.ReadFile("../systemd/psavd.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	want := `u psavd - "psavd border router" /var/lib/psavd`
	if !strings.Contains(string(text), "\n"+want+"\n") {
		t.Errorf("psavd.sysusers lacks %s", want)
	}
	sysusers, ok := testtool.Find("systemd-sysusers")
	if !ok {
		return // in the systemd package too, which TestUnitVerifies requires
	}
	// Create them in an empty root, as the package's postinstall does.
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs("../systemd/psavd.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sysusers, "--root="+dir, abs).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, err := os.ReadFile(filepath.Join(dir, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^psavd:x:[0-9]+:[0-9]+:psavd border router:/var/lib/psavd:`).Match(passwd) {
		t.Errorf("systemd-sysusers made no psavd user:\n%s", passwd)
	}
}

// go tool nfpm builds the .deb from deploy/nfpm.yaml (as make deb does) and
// it holds every file at its path, the example configuration as a conffile,
// the postinstall, and the control fields.
func TestDeb(t *testing.T) {
	dpkgDeb := testtool.Path(t, "dpkg-deb", "dpkg")
	bin := generated(t)
	deb := filepath.Join(t.TempDir(), "psavd_1.2.3-test_amd64.deb")
	cmd := exec.Command("go", "tool", "nfpm", "pkg", "--config", "deploy/nfpm.yaml", "--packager", "deb", "--target", deb)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "PSAVD_VERSION=1.2.3-test", "PSAVD_BIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go tool nfpm: %v\n%s", err, out)
	}

	out, err := exec.Command(dpkgDeb, "-c", deb).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -c: %v\n%s", err, out)
	}
	modes := map[string]string{} // path → mode
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c: line %q", line)
		}
		modes[strings.TrimPrefix(f[len(f)-1], ".")] = f[0]
	}
	for path, mode := range map[string]string{
		"/usr/bin/psavd":                    "-rwxr-xr-x",
		"/usr/bin/psavctl":                  "-rwxr-xr-x",
		"/lib/systemd/system/psavd.service": "-rw-r--r--",
		"/usr/lib/sysusers.d/psavd.conf":    "-rw-r--r--",
		"/etc/psavd/engine.toml.example":    "-rw-r--r--",
		"/usr/share/doc/psavd/README.md":    "-rw-r--r--",
		"/usr/share/doc/psavd/config.md":    "-rw-r--r--",
		"/usr/share/doc/psavd/wire.md":      "-rw-r--r--",
		"/usr/share/doc/psavd/copyright":    "-rw-r--r--",
		"/usr/share/doc/psavd/deploy.md":    "-rw-r--r--",
		"/usr/share/doc/psavd/join.md":      "-rw-r--r--",
		// psavctl's completions and man pages (make completion, make man).
		"/usr/share/bash-completion/completions/psavctl":    "-rw-r--r--",
		"/usr/share/zsh/vendor-completions/_psavctl":        "-rw-r--r--",
		"/usr/share/fish/vendor_completions.d/psavctl.fish": "-rw-r--r--",
		"/usr/share/man/man1/psavctl.1.gz":                  "-rw-r--r--",
		"/usr/share/man/man1/psavctl-status.1.gz":           "-rw-r--r--",
		"/usr/share/man/man1/psavctl-record-new.1.gz":       "-rw-r--r--",
		"/usr/share/man/man1/psavctl-decent-index.1.gz":     "-rw-r--r--",
	} {
		if got, ok := modes[path]; !ok {
			t.Errorf("the .deb lacks %s", path)
		} else if got != mode {
			t.Errorf("%s: mode %s, want %s", path, got, mode)
		}
	}
	if _, ok := modes["/etc/psavd/engine.toml"]; ok {
		t.Error("the .deb ships /etc/psavd/engine.toml: it is the operator's")
	}

	fields := map[string]string{}
	// Every man page make man generated is in the package, and nothing else
	// under man1.
	pages, err := filepath.Glob(filepath.Join(bin, "man", "*.1.gz"))
	if err != nil || len(pages) < 20 {
		t.Fatalf("make man generated %d pages: %v", len(pages), err)
	}
	inMan1 := 0
	for path := range modes {
		if strings.HasPrefix(path, "/usr/share/man/man1/") && path != "/usr/share/man/man1/" {
			inMan1++
		}
	}
	for _, p := range pages {
		if _, ok := modes["/usr/share/man/man1/"+filepath.Base(p)]; !ok {
			t.Errorf("the .deb lacks the man page %s", filepath.Base(p))
		}
	}
	if inMan1 != len(pages) {
		t.Errorf("the .deb has %d files in /usr/share/man/man1, make man made %d", inMan1, len(pages))
	}

	for _, f := range []string{"Package", "Version", "Architecture", "Section", "Homepage", "Recommends", "Maintainer"} {
		v, err := exec.Command(dpkgDeb, "-f", deb, f).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -f %s: %v", f, err)
		}
		fields[f] = strings.TrimSpace(string(v))
	}
	for f, want := range map[string]string{"Package": "psavd", "Version": "1.2.3-test", "Architecture": "amd64",
		"Section": "net", "Homepage": "https://github.com/psavd/psavd", "Recommends": "systemd",
		"Maintainer": "psavd developers <psavd@users.noreply.github.com>"} {
		if fields[f] != want {
			t.Errorf("control field %s: %q, want %q", f, fields[f], want)
		}
	}

	// The control members: the conffile and the postinstall.
	ctrl := t.TempDir()
	if out, err := exec.Command(dpkgDeb, "-e", deb, ctrl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if err != nil || strings.TrimSpace(string(conffiles)) != "/etc/psavd/engine.toml.example" {
		t.Errorf("conffiles: %q %v, want /etc/psavd/engine.toml.example", conffiles, err)
	}
	postinst, err := os.ReadFile(filepath.Join(ctrl, "postinst"))
	if err != nil {
		t.Fatalf("postinst: %v", err)
	}
	for _, want := range []string{"systemd-sysusers psavd.conf", "systemctl daemon-reload", "/run/systemd/system"} {
		if !strings.Contains(string(postinst), want) {
			t.Errorf("postinst lacks %s:\n%s", want, postinst)
		}
	}

	// The unit in the package is the one in the tree, naming /usr/bin/psavd.
	data := t.TempDir()
	if out, err := exec.Command(dpkgDeb, "-x", deb, data).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	for pkgPath, src := range map[string]string{"lib/systemd/system/psavd.service": unitFile,
		"usr/lib/sysusers.d/psavd.conf": "../systemd/psavd.sysusers", "usr/share/doc/psavd/copyright": "../../LICENSE"} {
		got, err1 := os.ReadFile(filepath.Join(data, pkgPath))
		want, err2 := os.ReadFile(src)
		if err1 != nil || err2 != nil || string(got) != string(want) {
			t.Errorf("/%s is not %s (%v %v)", pkgPath, src, err1, err2)
		}
	}
	// The completions are what the packaged psavctl prints, and the man
	// pages are man pages of its commands.
	for pkgPath, shell := range map[string]string{"usr/share/bash-completion/completions/psavctl": "bash",
		"usr/share/zsh/vendor-completions/_psavctl": "zsh", "usr/share/fish/vendor_completions.d/psavctl.fish": "fish"} {
		got, err := os.ReadFile(filepath.Join(data, pkgPath))
		if err != nil {
			t.Fatal(err)
		}
		want, err := exec.Command(filepath.Join(data, "usr/bin/psavctl"), "completion", shell).Output()
		if err != nil || len(want) == 0 || string(got) != string(want) {
			t.Errorf("/%s is not psavctl completion %s (%v)", pkgPath, shell, err)
		}
	}
	for name, title := range map[string]string{"psavctl.1.gz": "PSAVCTL", "psavctl-record-submit.1.gz": "PSAVCTL-RECORD-SUBMIT"} {
		page := gunzip(t, filepath.Join(data, "usr/share/man/man1", name))
		if !strings.Contains(page, `.TH "`+title+`" "1" `) || !strings.Contains(page, ".SH SYNOPSIS") {
			t.Errorf("%s is no man page of %s:\n%.300s", name, title, page)
		}
	}
}

// gunzip reads a gzip file (a man page as Debian ships it).
func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}
