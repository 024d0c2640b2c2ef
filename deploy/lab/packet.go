package lab

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/psavd/psavd/engine/header"
)

// The lab builds its frames (forged traffic, the integration tests'
// packets) by hand with engine/header's builders rather than with a packet
// library, because the tests must control every octet (option placement,
// extension header order) and compare bytes exactly; PSAV tags are encoded
// by internal/psavref, independently of the engine. What is the lab's own
// is here: reading the IP packet out of a captured frame, and the markers
// that identify a packet wherever it ends up.

// IPOf returns the IP packet of an Ethernet frame (no VLAN tags in the lab),
// or nil when the frame carries neither IPv4 nor IPv6.
func IPOf(frame []byte) []byte {
	if len(frame) < header.EthernetHeaderLen {
		return nil
	}
	switch header.Ethernet(frame).Type() {
	case header.EtherTypeIPv4, header.EtherTypeIPv6:
		return frame[header.EthernetHeaderLen:]
	}
	return nil
}

// Marker identifies one packet of one flow of one run. Its text form,
// "PSAVLAB<run>-<flow>-<seq>", is carried in the payload so that a sniffer
// can recognise the packet wherever it ends up, whatever headers were added.
type Marker struct {
	Flow, Seq int
}

const markerPrefix = "PSAVLAB"

// MarkerText returns the payload text of marker m of run.
func MarkerText(run string, m Marker) string {
	return fmt.Sprintf("%s%s-%03d-%05d", markerPrefix, run, m.Flow, m.Seq)
}

// Markers returns the markers of run found anywhere in b (a TCP segment may
// carry several records).
func Markers(b []byte, run string) []Marker {
	pre := []byte(markerPrefix + run + "-")
	var ms []Marker
	for {
		i := bytes.Index(b, pre)
		if i < 0 {
			return ms
		}
		b = b[i+len(pre):]
		if len(b) < 9 || b[3] != '-' {
			continue
		}
		f, err1 := strconv.Atoi(string(b[:3]))
		s, err2 := strconv.Atoi(string(b[4:9]))
		if err1 == nil && err2 == nil {
			ms = append(ms, Marker{f, s})
		}
	}
}
