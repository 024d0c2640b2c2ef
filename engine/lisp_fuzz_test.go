package engine

import (
	"bytes"
	"testing"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// FuzzProcessLISP: whole frames through both LISP xTRs, on each side: the
// decapsulation parser and the encapsulation path never panic, and every
// packet is either forwarded or counted as exactly one drop (FuzzProcess's
// invariant). Frames the ITR encapsulates decapsulate at the ETR to the
// inner packet the ITR sent, octet for octet.
func FuzzProcessLISP(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s, false, false)
	}
	for _, c := range lispFrames(f) {
		f.Add(c.in, false, false)
		f.Add(c.encaps, true, true)
		bad := append([]byte(nil), c.encaps...)
		bad[len(bad)-30] ^= 0xff
		f.Add(bad, true, true)
	}
	itr := lispXTR(f, 65001, Policy{TooBigPerSecond: 1 << 30}, remoteEIDs(rloc2v4, rloc2v4))
	etr := lispXTR(f, 65002, Policy{}, remoteEIDs(rloc1v6, rloc1v6))
	// One processor per (engine, port), reused: each owns a miss queue.
	prs := [2][2]*Processor{{itr.NewProcessor(0), itr.NewProcessor(1)}, {etr.NewProcessor(0), etr.NewProcessor(1)}}
	decap := etr.NewProcessor(1)
	f.Fuzz(func(t *testing.T, frame []byte, second, outside bool) {
		if len(frame) > ports.MaxFrame {
			return
		}
		e, in := 0, 0
		if second {
			e = 1
		}
		if outside {
			in = 1
		}
		pr := prs[e][in]
		before := pr.Counters.RxPackets.Load()
		var dropsBefore uint64
		for _, r := range Reasons() {
			dropsBefore += pr.Counters.Drops[r].Load()
		}
		encBefore := pr.Counters.LISP[LISPEncapsulated].Load()
		pkt := process(pr, frame, vecNow)
		var d uint64
		for _, r := range Reasons() {
			d += pr.Counters.Drops[r].Load()
		}
		if pr.Counters.RxPackets.Load() != before+1 || (pkt.Out == ports.Drop) != (d == dropsBefore+1) {
			t.Fatalf("forwarded=%v with %d drops counted", pkt.Out != ports.Drop, d-dropsBefore)
		}
		if pkt.Out != ports.Drop && (pkt.Off < 0 || pkt.Off+pkt.Len > len(pkt.Buf) || pkt.Len < header.EthernetHeaderLen) {
			t.Fatalf("frame outside its buffer: off %d len %d", pkt.Off, pkt.Len)
		}
		itr.Misses(nil)
		etr.Misses(nil)
		if pr.Counters.LISP[LISPEncapsulated].Load() == encBefore {
			return
		}
		// Round trip: the ETR's decapsulation gives back the inner packet.
		enc := pkt.Frame()
		over := lispOverhead4
		if enc[12] == 0x86 {
			over = lispOverhead6
		}
		inner := append([]byte(nil), enc[header.EthernetHeaderLen+over:]...)
		buf := make([]byte, ports.Headroom+ports.MaxFrame)
		dp := ports.Packet{Buf: buf, Off: ports.Headroom, Len: copy(buf[ports.Headroom:], enc)}
		var p parsed
		if !p.parse(dp.Frame()) {
			t.Fatalf("encapsulated frame does not parse: %x", enc)
		}
		if handled, r, ok := decap.decapLISP(&dp, &p, &etr.lisp[1]); !handled || !ok {
			t.Fatalf("own encapsulation not decapsulated (%s): %x", r, enc)
		}
		if got := dp.Frame()[header.EthernetHeaderLen:]; !bytes.Equal(got, inner) {
			// The inner TTL may only have been lowered to the outer's (equal here).
			t.Fatalf("round trip:\n got %x\nwant %x", got, inner)
		}
	})
}
