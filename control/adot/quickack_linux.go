package adot

import (
	"net"
	"syscall"
)

// setQuickAck puts the socket into TCP quick-ACK mode (Linux), so that data
// received while we have nothing to send is acknowledged at once instead
// of after the delayed-ACK timer (≈40 ms). See README.md "First-query stall".
// Linux may leave quick-ACK mode again on its own; it is re-armed per use.
func setQuickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
