package sdnotify

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listen opens a unixgram socket at name (a path, or '@' for the abstract
// namespace), points NOTIFY_SOCKET at it and returns it.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	addr := name
	if strings.HasPrefix(name, "@") {
		addr = "\x00" + name[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv(Socket, name)
	return c
}

func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, _, err := c.ReadFromUnix(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyPathSocket(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	for _, tc := range []struct {
		send func() error
		want string
	}{
		{NotifyReady, "READY=1"},
		{NotifyStopping, "STOPPING=1"},
		{func() error { return NotifyStatus("2 roles up\nall well") }, "STATUS=2 roles up all well"},
	} {
		if err := tc.send(); err != nil {
			t.Fatal(err)
		}
		if got := recv(t, c); got != tc.want {
			t.Errorf("sent %q, want %q", got, tc.want)
		}
	}
}

func TestNotifyAbstractSocket(t *testing.T) {
	c := listen(t, fmt.Sprintf("@psavd-sdnotify-test-%d", time.Now().UnixNano()))
	if err := NotifyReady(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, c); got != "READY=1" {
		t.Errorf("sent %q, want READY=1", got)
	}
}

func TestNotifyReloading(t *testing.T) {
	c := listen(t, filepath.Join(t.TempDir(), "notify"))
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	before := ts.Nano() / 1000
	if err := NotifyReloading(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(recv(t, c), "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("sent %q, want RELOADING=1 and MONOTONIC_USEC=…", lines)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if usec < before || usec > before+int64(time.Minute/time.Microsecond) {
		t.Errorf("MONOTONIC_USEC=%d, want the monotonic clock (about %d)", usec, before)
	}
}

func TestNotifyUnsetIsNoop(t *testing.T) {
	t.Setenv(Socket, "")
	if err := NotifyReady(); err != nil {
		t.Errorf("NOTIFY_SOCKET unset: %v, want nil", err)
	}
}

func TestNotifyMissingSocket(t *testing.T) {
	t.Setenv(Socket, filepath.Join(t.TempDir(), "absent"))
	if err := NotifyReady(); err == nil {
		t.Error("a socket that does not exist: nil error")
	}
}
