package adot

import (
	"encoding/binary"
	"errors"
	"io"
	"net"

	"github.com/miekg/dns"
)

// writeFramed writes the RFC 1035 §4.2.2 two-octet length prefix and the
// message in ONE Write call, so that over TLS they form one TLS record and
// one TCP segment. Writing them separately (two records, two segments) lets
// Nagle's algorithm on one side hold the second segment until the peer's
// delayed ACK (40 ms on Linux) fires. See README.md.
func writeFramed(w io.Writer, wire []byte) error {
	if len(wire) > dns.MaxMsgSize {
		return errors.New("adot: message too large")
	}
	buf := make([]byte, 2+len(wire))
	binary.BigEndian.PutUint16(buf, uint16(len(wire)))
	copy(buf[2:], wire)
	_, err := w.Write(buf)
	return err
}

// readFramed reads one length-prefixed DNS message.
func readFramed(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n < 12 {
		return nil, errShortMsg
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

var errShortMsg = errors.New("adot: DNS message shorter than a header")

// setNoDelay disables Nagle's algorithm on the TCP connection under c (Go
// does this by default; we make it explicit and independent of the dialer).
func setNoDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}
