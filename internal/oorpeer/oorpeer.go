// Package oorpeer builds and runs Open Overlay Router (OOR), a real LISP
// xTR / Map-Server / Map-Resolver from another code base, for psavd's
// interop tests. The source tarball and its build script are the peers
// directory (../shared/peers relative to the repository) that CI has; the
// build goes to a cache directory outside the repository keyed by the
// tarball's hash, so it happens once per machine, not once per test.
// Each OOR runs in a network namespace with a private bind mount over the
// build's ipc directory (OOR's API socket has a fixed path), as the peers
// README says.
package oorpeer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/syncbuf"
	"github.com/psavd/psavd/internal/testtool"
)

// Tarball is the OOR source the peers directory holds.
const Tarball = "oor-e5fdf59.tar.gz"

// PeersDir returns the peers directory for a test running in the package
// directory rel levels below the repository root ("../.." for
// test/integration), or "" when there is none (a user's clone).
func PeersDir(rel string) string {
	d, err := filepath.Abs(filepath.Join(rel, "..", "shared", "peers"))
	if err != nil {
		return ""
	}
	if _, err := os.Stat(filepath.Join(d, Tarball)); err != nil {
		return ""
	}
	return d
}

// CacheDir is where builds go: $PSAVD_OOR_CACHE, else /var/cache/psavd-oor
// for root, else $XDG_CACHE_HOME (or ~/.cache)/psavd-oor.
func CacheDir() string {
	if d := os.Getenv("PSAVD_OOR_CACHE"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/cache/psavd-oor"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "psavd-oor")
	}
	return filepath.Join(os.TempDir(), "psavd-oor")
}

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// Build builds OOR from peers (once per tarball hash, in CacheDir) and
// returns the oor binary and the build directory.
func Build(peers string) (bin, dir string, err error) {
	buildMu.Lock()
	defer buildMu.Unlock()
	tar := filepath.Join(peers, Tarball)
	f, err := os.Open(tar)
	if err != nil {
		return "", "", err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", "", err
	}
	dir = filepath.Join(CacheDir(), hex.EncodeToString(h.Sum(nil))[:16])
	if b, ok := built[dir]; ok {
		return b, dir, nil
	}
	bin = filepath.Join(dir, "oor", "oor")
	if _, err := os.Stat(bin); err != nil {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return "", "", err
		}
		out, err := exec.Command("bash", filepath.Join(peers, "build-oor.sh"), dir).CombinedOutput()
		if err != nil {
			return "", "", fmt.Errorf("oorpeer: build-oor.sh: %v\n%s", err, out)
		}
	}
	built[dir] = bin
	return bin, dir, nil
}

// Need returns the OOR binary and build directory for a test rel levels
// below the repository root: skipped where the peers directory is absent,
// failed instead under PSAVD_REQUIRE_TOOLS=1 or when the build fails.
func Need(t testing.TB, rel string) (bin, dir string) {
	t.Helper()
	peers := PeersDir(rel)
	if peers == "" {
		if testtool.Required() {
			t.Fatalf("../shared/peers/%s absent and %s=1", Tarball, testtool.RequireEnv)
		}
		t.Skipf("../shared/peers/%s absent (a clone without the interop peers): OOR interop skipped", Tarball)
	}
	bin, dir, err := Build(peers)
	if err != nil {
		t.Fatal(err)
	}
	return bin, dir
}

// OOR is a running oor process.
type OOR struct {
	Conf string
	cmd  *exec.Cmd
	log  *syncbuf.Buffer
	done chan struct{}
	once sync.Once
}

// Start runs bin (built in buildDir) in namespace ns with configuration
// text conf, written with a private ipc directory into workDir. OOR logs
// to stdout (no log-file key), line-buffered through stdbuf (a pipe would
// otherwise hold its lines until exit): Log returns it.
func Start(bin, buildDir, ns, workDir, conf string) (*OOR, error) {
	ipc := filepath.Join(workDir, "ipc")
	if err := os.MkdirAll(ipc, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(workDir, "oor.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	sh := fmt.Sprintf("mount --bind %q %q && exec stdbuf -oL -eL %q -f %q", ipc, filepath.Join(buildDir, "ipc"), bin, path)
	cmd := exec.Command("ip", "netns", "exec", ns, "sh", "-c", sh)
	o := &OOR{Conf: path, cmd: cmd, log: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = o.log, o.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = cmd.Wait(); close(o.done) }()
	return o, nil
}

// Pid is the oor process's id (ip netns exec, sh and stdbuf exec into it),
// for benchmarks that read its CPU time.
func (o *OOR) Pid() int { return o.cmd.Process.Pid }

// Log is what OOR has written so far.
func (o *OOR) Log() string { return o.log.String() }

// Count is the number of log lines containing s.
func (o *OOR) Count(s string) int { return strings.Count(o.Log(), s) }

// Exited reports whether the process has ended.
func (o *OOR) Exited() bool {
	select {
	case <-o.done:
		return true
	default:
		return false
	}
}

// ErrExited is returned by Wait when OOR ends while waited on.
var ErrExited = errors.New("oorpeer: oor exited")

// Wait waits up to d for cond, polling.
func (o *OOR) Wait(d time.Duration, cond func() bool) error {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return nil
		}
		if o.Exited() {
			return ErrExited
		}
		time.Sleep(200 * time.Millisecond)
	}
	return errors.New("oorpeer: timed out")
}

// Stop ends the process (its process group: sh exec'd into oor) and
// waits.
func (o *OOR) Stop() {
	o.once.Do(func() {
		_ = syscall.Kill(-o.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-o.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-o.cmd.Process.Pid, syscall.SIGKILL)
			<-o.done
		}
	})
}
