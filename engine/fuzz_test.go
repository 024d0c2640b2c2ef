package engine

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports"
)

// seeds returns every vector frame, tagged and untagged, as a fuzz corpus.
func seeds(t testing.TB) [][]byte {
	var s [][]byte
	for _, h := range []string{v4In, v4Out, v4OptIn, v4OptOut, v6In, v6Out, v6HbhIn, v6HbhOut, v6DoIn, v6DoOut} {
		s = append(s, mustHex(t, h))
	}
	return s
}

// FuzzParse: the parser never panics and never reports offsets outside the
// frame.
func FuzzParse(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p parsed
		if !p.parse(frame) || p.kind == kindOther {
			return
		}
		if p.l3End > len(frame) || p.hdrEnd > p.l3End || p.optOff >= p.l3End || p.nhOff >= len(frame) {
			t.Fatalf("offsets outside the frame: %+v (len %d)", p, len(frame))
		}
		if p.optOff >= 0 && p.optOff+2+optDataLen > p.l3End {
			t.Fatalf("option runs past the packet: %+v", p)
		}
	})
}

// FuzzInsertStrip: for any frame the parser accepts without a tag,
// inserting a tag yields a packet that parses, carries the tag where the
// parser finds it, has the same upper-layer octet, and strips back to the
// original IP packet octet for octet.
func FuzzInsertStrip(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s, uint64(0x0123456789abcdef), byte(7), byte(24))
	}
	// A NOP then End of Options: the tag goes in at an odd offset of the
	// header, where the incremental checksum takes byte-swapped words.
	odd := mustHex(f, v4In)
	odd = append(odd[:34:34], append([]byte{1, 0, 0, 0}, odd[34:]...)...)
	odd[14] = 0x46
	binary.BigEndian.PutUint16(odd[16:], binary.BigEndian.Uint16(odd[16:])+4)
	header.IPv4(odd[14:]).UpdateChecksum()
	f.Add(odd, uint64(0xfedcba9876543210), byte(255), byte(32))
	f.Add(odd, ^uint64(0), byte(0), byte(0))
	f.Fuzz(func(t *testing.T, frame []byte, tag uint64, epoch, plen byte) {
		if len(frame) > ports.MaxFrame-TagGrowth {
			return
		}
		var p parsed
		if !p.parse(frame) || p.kind == kindOther || p.optOff >= 0 {
			return
		}
		if p.kind == kindIPv4 {
			// 0xffff verifies like 0x0000 but no sender computes it; the
			// engine writes the canonical form (RFC 1071).
			h := append(header.IPv4(nil), frame[p.l3:p.hdrEnd]...)
			h.UpdateChecksum()
			if !bytes.Equal(h, frame[p.l3:p.hdrEnd]) {
				return
			}
		}
		orig := append([]byte(nil), frame[:p.l3End]...)
		first := p.firstOctet
		buf := make([]byte, ports.Headroom+ports.MaxFrame)
		r := &ports.Packet{Buf: buf, Off: ports.Headroom, Len: copy(buf[ports.Headroom:], frame)}
		if !insertTag(r, &p, tag, epoch, plen) {
			return // no room: fine
		}
		var q parsed
		if !q.parse(r.Frame()) {
			t.Fatalf("tagged packet does not parse: %x", r.Frame())
		}
		if q.optOff < 0 {
			t.Fatalf("tag not found after insert: %x", r.Frame())
		}
		d := optData(r.Frame(), &q)
		if beUint64(d[2:]) != tag || d[10] != epoch || d[11] != plen || d[0] != tagLenAI {
			t.Fatalf("option data %x", d)
		}
		if q.firstOctet != first || q.isFrag != p.isFrag {
			t.Fatalf("upper-layer octet changed by tagging: %x → %x", first, q.firstOctet)
		}
		if q.kind == kindIPv4 {
			// The incremental update must give what a full recomputation gives.
			h := append(header.IPv4(nil), r.Frame()[q.l3:q.hdrEnd]...)
			h.UpdateChecksum()
			if !bytes.Equal(h, r.Frame()[q.l3:q.hdrEnd]) {
				t.Fatalf("IPv4 header checksum after insert %x, full recomputation %x", r.Frame()[q.l3+10:q.l3+12], h[10:12])
			}
		}
		stripTag(r, &q)
		if !bytes.Equal(r.Frame(), orig) {
			t.Fatalf("strip did not restore:\n got %x\nwant %x", r.Frame(), orig)
		}
	})
}

// FuzzProcess: whole frames through the engine, on each side of both ABRs;
// nothing panics, every packet is either forwarded or counted as a drop.
func FuzzProcess(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s, false, false)
	}
	e1 := abr(f, 65001, vecNow)
	e2 := abr(f, 65002, vecNow)
	f.Fuzz(func(t *testing.T, frame []byte, second, outside bool) {
		if len(frame) > ports.MaxFrame {
			return
		}
		e, in := e1, 0
		if second {
			e = e2
		}
		if outside {
			in = 1
		}
		out, pr := run(t, e, in, frame, vecNow)
		var d uint64
		for _, r := range Reasons() {
			d += pr.Counters.Drops[r].Load()
		}
		if (out == nil) != (d == 1) {
			t.Fatalf("forwarded=%v with %d drops counted", out != nil, d)
		}
	})
}
