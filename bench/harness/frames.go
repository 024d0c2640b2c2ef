package harness

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/bench/gen"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/psavref"
)

// Addresses of the frame classes beyond the benchmark's own (gen.InsideV4,
// OutsideV4, …): a destination that is in no member's prefix (its frames
// are forwarded untagged), and a source that is not local (spoofed from the
// inside).
var (
	NonMemberV4 = netip.MustParseAddr("192.0.2.10")
	NonMemberV6 = netip.MustParseAddr("2001:db8:3::10")
	SpoofedV4   = netip.MustParseAddr("100.64.0.10")
	SpoofedV6   = netip.MustParseAddr("2001:db8:9::10")
)

// class is what psavd should do with a frame.
type class int

const (
	classTagged   class = iota // tag case: tagged; validate case: carries a valid tag, stripped
	classUntagged              // forwarded untagged (no member on the far side)
	classSpoofed               // dropped (spoofed-inside; no-tag)
)

// slots spreads MixSlots frames over the mix: slot i's family and class.
// The families alternate evenly (Bresenham); the classes are spread evenly
// within each family, so every class sees both families in proportion.
func slots(m Mix) (v6 [MixSlots]bool, cls [MixSlots]class) {
	n6 := int(m.IPv6*MixSlots + 0.5)
	nu := int(m.Untagged*MixSlots + 0.5)
	ns := int(m.Spoofed*MixSlots + 0.5)
	for i := range MixSlots {
		v6[i] = (i+1)*n6/MixSlots > i*n6/MixSlots
	}
	// Interleave the classes evenly (item j of a class of n sits at
	// (j+½)/n) and lay the sequence over the IPv4 slots, then the IPv6
	// ones: each family gets its share of every class.
	type item struct {
		pos float64
		c   class
	}
	var seq []item
	for _, cn := range []struct {
		c class
		n int
	}{{classTagged, MixSlots - nu - ns}, {classUntagged, nu}, {classSpoofed, ns}} {
		for j := range cn.n {
			seq = append(seq, item{(float64(j) + 0.5) / float64(cn.n), cn.c})
		}
	}
	slices.SortStableFunc(seq, func(a, b item) int { return cmp.Compare(a.pos, b.pos) })
	k := 0
	for _, fam := range []bool{false, true} {
		for i := range MixSlots {
			if v6[i] == fam {
				cls[i] = seq[k].c
				k++
			}
		}
	}
	return v6, cls
}

// Frames returns the templates of one measurement: MixSlots frames of size
// octets (before any tag) from the generator to In. validating false is
// the inside → outside direction (psavd-tag, and both baselines): tagged
// class InsideV* → OutsideV*, untagged InsideV* → NonMemberV*, spoofed
// SpoofedV* → OutsideV*. validating true is outside → inside, tagged with
// keys for the epoch of now (size+16 octets): valid OutsideV* → InsideV*
// tagged, untagged NonMemberV* → InsideV* (an unverifiable source),
// spoofed OutsideV* → InsideV* without a tag. A mix with only one kind of
// frame yields one template.
func Frames(m Mix, size int, validating bool, keys bench.Keys, now time.Time) ([][]byte, error) {
	v6, cls := slots(m)
	var out [][]byte
	cache := map[[2]int][]byte{}
	for i := range MixSlots {
		k := [2]int{int(cls[i]), 0}
		if v6[i] {
			k[1] = 1
		}
		f, ok := cache[k]
		if !ok {
			var err error
			if f, err = frame(cls[i], v6[i], size, validating, keys, now, 0); err != nil {
				return nil, err
			}
			cache[k] = f
		}
		out = append(out, f)
	}
	if len(cache) == 1 {
		out = out[:1]
	}
	return out, nil
}

// frame builds one frame of class c.
func frame(c class, v6 bool, size int, validating bool, keys bench.Keys, now time.Time, tos uint8) ([]byte, error) {
	in, out := gen.InsideV4, gen.OutsideV4
	nonMember, spoofed := NonMemberV4, SpoofedV4
	pfx := uint8(24)
	if v6 {
		in, out, nonMember, spoofed, pfx = gen.InsideV6, gen.OutsideV6, NonMemberV6, SpoofedV6, 48
	}
	src, dst := in, out
	tag := false
	switch {
	case !validating && c == classUntagged:
		dst = nonMember
	case !validating && c == classSpoofed:
		src = spoofed
	case validating && c == classTagged:
		src, dst, tag = out, in, true
	case validating && c == classUntagged:
		src, dst = nonMember, in
	case validating && c == classSpoofed:
		src, dst = out, in
	}
	f, err := gen.UDPFrame{SrcMAC: bench.GenMAC, DstMAC: bench.InMAC, Src: src, Dst: dst,
		SrcPort: 40000, DstPort: 9, Size: size}.Build()
	if err != nil {
		return nil, err
	}
	if tos != 0 {
		if v6 {
			return nil, fmt.Errorf("harness: probes are IPv4")
		}
		// Set the TOS and fix the header checksum; the UDP checksum is
		// zeroed (allowed in IPv4) because the probe's payload changes
		// with every send.
		ip := header.IPv4(f[header.EthernetHeaderLen:])
		ip.SetTOS(tos)
		ip.UpdateChecksum()
		header.UDP(ip[ip.HeaderLen():]).SetChecksum(0)
	}
	if !tag {
		return f, nil
	}
	e := bench.Epoch(now)
	key, err := psavref.Key(keys.S0, keys.E0, e)
	if err != nil {
		return nil, err
	}
	return psavref.TagFrame(f, key, e, pfx)
}

// ProbeFrame returns the template of the latency probes of a measurement:
// an IPv4 frame of the tagged class (valid tag in the validating direction)
// of size octets (at least MinProbeSize; in the validating direction at
// most 1498, so that it fits the MTU with its tag) with TOS gen.ProbeTOS, which the sink
// passes to a packet socket instead of dropping. Its last ProbeTrailer
// octets are rewritten with every send (the tag does not cover them: it
// covers the addresses and the first octet of the UDP header).
func ProbeFrame(size int, validating bool, keys bench.Keys, now time.Time) ([]byte, error) {
	size = max(size, MinProbeSize)
	if validating {
		// The probe leaves by a packet socket, which holds it to gen0's
		// MTU (1500 + 14 octets) with the 16-octet tag included.
		size = min(size, maxSocketFrame-tagLen)
	}
	return frame(classTagged, false, size, validating, keys, now, gen.ProbeTOS)
}

// The probe's trailer: magic, sequence number, send time (ns, CLOCK_REALTIME).
const (
	tagLen         = 16        // a PSAV tag as the frames carry it (docs/wire.md §2.3)
	maxSocketFrame = 1500 + 14 // the veths' MTU plus the Ethernet header
	ProbeTrailer   = 16
	MinProbeSize   = gen.MinFrameV4 + ProbeTrailer
	probeMagic     = 0x50535650 // "PSVP"
)

// putTrailer writes the trailer at the end of frame f.
func putTrailer(f []byte, seq uint32, sentNS int64) {
	t := f[len(f)-ProbeTrailer:]
	binary.BigEndian.PutUint32(t[0:], probeMagic)
	binary.BigEndian.PutUint32(t[4:], seq)
	binary.BigEndian.PutUint64(t[8:], uint64(sentNS))
}

// readTrailer reads the trailer of a received frame.
func readTrailer(f []byte) (seq uint32, sentNS int64, ok bool) {
	if len(f) < MinProbeSize {
		return 0, 0, false
	}
	t := f[len(f)-ProbeTrailer:]
	if binary.BigEndian.Uint32(t[0:]) != probeMagic {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(t[4:]), int64(binary.BigEndian.Uint64(t[8:])), true
}
