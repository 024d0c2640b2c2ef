package packaging

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/bindserver"
	"github.com/psavd/psavd/internal/testpki"
)

// What the Type=notify unit relies on, with the real binary as systemd
// starts it (NOTIFY_SOCKET set): READY=1 once the node is up, RELOADING=1
// with MONOTONIC_USEC then READY=1 around a SIGHUP reload, STOPPING=1 on
// SIGTERM, and a clean exit. A DoT-server-only node: it needs no root.
func TestNotifyProtocol(t *testing.T) {
	psavd := filepath.Join(binaries(t), "psavd")
	dir := t.TempDir()
	pki, err := testpki.NewServerPKI(dir, "ns.example.test")
	if err != nil {
		t.Fatal(err)
	}
	port, err := bindserver.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "engine.toml")
	text := fmt.Sprintf(`[psav]
asn = 65001

[adot.server]
listen = "127.0.0.1:%d"
cert = %q
key = %q
zone = "map-server.example.test"

[adot.server.records]
"0" = ["A 192.0.2.10"]
`, port, pki.CertFile, pki.KeyFile)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	sock := filepath.Join(dir, "notify")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	recv := func(want string) string {
		t.Helper()
		buf := make([]byte, 4096)
		if err := l.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := l.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		got := string(buf[:n])
		if !strings.HasPrefix(got, want) {
			t.Fatalf("psavd sent %q, want %s", got, want)
		}
		return got
	}

	var logs strings.Builder
	cmd := exec.Command(psavd, "-config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	defer func() {
		if !exited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("psavd log:\n%s", logs.String())
		}
	}()

	recv("READY=1")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := recv("RELOADING=1\n"); !strings.Contains(got, "\nMONOTONIC_USEC=") {
		t.Errorf("reload notification %q lacks MONOTONIC_USEC", got)
	}
	recv("READY=1")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	recv("STOPPING=1")
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Errorf("psavd after SIGTERM: %v", err)
	}
}
