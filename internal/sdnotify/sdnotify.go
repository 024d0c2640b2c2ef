// Package sdnotify tells systemd how the service is doing, the sd_notify(3)
// protocol without libsystemd: each state is one datagram of "KEY=value"
// lines sent to the unix socket named by $NOTIFY_SOCKET (a path, or an
// abstract-namespace name when it starts with '@'). Where NOTIFY_SOCKET is
// unset (not started by systemd, or a unit that is not Type=notify) every
// call does nothing and returns nil.
//
// psavd sends READY=1 once every role is up, RELOADING=1 (with
// MONOTONIC_USEC, as systemd.service(5) asks) before applying a SIGHUP
// reload and READY=1 after it, and STOPPING=1 when it begins to stop.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The states psavd reports.
const (
	Ready     = "READY=1"
	Reloading = "RELOADING=1"
	Stopping  = "STOPPING=1"
)

// Socket is the environment variable systemd sets for Type=notify services.
const Socket = "NOTIFY_SOCKET"

// Notify sends state (one or more "KEY=value" lines) to $NOTIFY_SOCKET. It
// returns nil without sending anything when the variable is unset.
func Notify(state string) error {
	name := os.Getenv(Socket)
	if name == "" {
		return nil
	}
	addr := &net.UnixAddr{Name: name, Net: "unixgram"}
	if strings.HasPrefix(name, "@") {
		// Go spells the abstract namespace with a leading NUL.
		addr.Name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", name, err)
	}
	return nil
}

// NotifyReady says that the service is up (READY=1).
func NotifyReady() error { return Notify(Ready) }

// NotifyReloading says that a reload has begun: RELOADING=1 and the
// CLOCK_MONOTONIC time in microseconds, which systemd uses to tell this
// reload from an earlier one. Send READY=1 when it is done.
func NotifyReloading() error {
	return Notify(Reloading + "\n" + monotonicUsec())
}

// NotifyStopping says that the service is stopping (STOPPING=1).
func NotifyStopping() error { return Notify(Stopping) }

// NotifyStatus sets the one-line status systemctl status shows (STATUS=…);
// a newline in s would end the field, so it is replaced by a space.
func NotifyStatus(s string) error {
	return Notify("STATUS=" + strings.ReplaceAll(s, "\n", " "))
}

func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// Never on Linux; a zero time still marks the reload.
		ts = unix.Timespec{}
	}
	return fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/int64(time.Microsecond))
}
