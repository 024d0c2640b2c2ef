package integration

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"

	"github.com/dchest/siphash"

	"github.com/psavd/psavd/deploy/lab"
)

// An independent reading of docs/wire.md §2.3–2.5, written from the document and
// not from the engine: the tests judge psavd's tags with it, so that a
// mistake made the same way on both sides of one implementation still shows.

// tagKey returns K(e) for the state machine seeded with s0 at epoch e0.
func tagKey(s0hex string, e0, e int64) ([16]byte, error) {
	var k [16]byte
	s, err := hex.DecodeString(s0hex)
	if err != nil || len(s) != 32 {
		return k, fmt.Errorf("bad s0 %q", s0hex)
	}
	if e < e0 {
		return k, fmt.Errorf("epoch %d before start epoch %d", e, e0)
	}
	for ; e0 < e; e0++ {
		m := hmac.New(sha256.New, s)
		m.Write([]byte("psav state"))
		s = m.Sum(nil)
	}
	m := hmac.New(sha256.New, s)
	m.Write([]byte("psav tag key"))
	copy(k[:], m.Sum(nil))
	return k, nil
}

// refTag computes the 64-bit tag of docs/wire.md §2.4.
func refTag(key [16]byte, src, dst netip.Addr, firstOctet, pfxLen uint8) uint64 {
	s, d := src.As16(), dst.As16() // IPv4 becomes ::ffff:a.b.c.d
	msg := append(append(append([]byte{}, s[:]...), d[:]...), firstOctet, pfxLen)
	return siphash.Hash(binary.LittleEndian.Uint64(key[0:8]), binary.LittleEndian.Uint64(key[8:16]), msg)
}

// tagInfo is a PSAV tag found in a packet.
type tagInfo struct {
	body       []byte // the 12 octets TagLen/AI … prefix length
	tag        uint64
	epoch      uint8
	pfxLen     uint8
	firstOctet uint8 // first octet of the upper-layer header
	// alone: the tag can be removed as a whole: the IPv4 option followed by
	// its two NOPs, or a Destination Options header of its own.
	alone bool
	at    int // IPv4: offset of the option in the packet
	count int // PSAV options found (must be 1)
}

// findTag locates the PSAV tag of an IP packet.
func findTag(p []byte) (tagInfo, error) {
	var ti tagInfo
	switch p[0] >> 4 {
	case 4:
		ihl := int(p[0]&0xf) * 4
		opts := p[20:ihl]
		for i := 0; i < len(opts); {
			switch opts[i] {
			case 0: // end of options list
				i = len(opts)
				continue
			case 1:
				i++
				continue
			}
			if i+1 >= len(opts) || opts[i+1] < 2 || i+int(opts[i+1]) > len(opts) {
				return ti, fmt.Errorf("malformed IPv4 options % x", opts)
			}
			if opts[i] == 0x9e {
				if opts[i+1] != 14 {
					return ti, fmt.Errorf("PSAV option of length %d", opts[i+1])
				}
				ti.count++
				ti.body = opts[i+2 : i+14]
				ti.at = 20 + i
				// The tagger appends the option after the existing ones,
				// which puts it before an End of Options List and its
				// padding, if the packet had them.
				ti.alone = i+16 <= len(opts) && opts[i+14] == 1 && opts[i+15] == 1
			}
			i += int(opts[i+1])
		}
		ti.firstOctet = p[ihl]
	case 6:
		nh, off := p[6], 40
		for nh == lab.ProtoHopByHop || nh == lab.ProtoDestOpts {
			hl := (int(p[off+1]) + 1) * 8
			if nh == lab.ProtoDestOpts {
				for i := off + 2; i < off+hl; {
					if p[i] == 0 { // Pad1
						i++
						continue
					}
					if p[i] == 0x3b {
						if p[i+1] != 12 {
							return ti, fmt.Errorf("PSAV option of length %d", p[i+1])
						}
						ti.count++
						ti.body = p[i+2 : i+14]
						ti.alone = hl == 16 && i == off+2
					}
					i += 2 + int(p[i+1])
				}
			}
			nh, off = p[off], off+hl
		}
		ti.firstOctet = p[off]
	}
	if ti.count != 1 {
		return ti, fmt.Errorf("%d PSAV tags", ti.count)
	}
	if ti.body[0] != 7<<4|1 || ti.body[1] != 0 {
		return ti, fmt.Errorf("TagLen/AI/reserved % x, want 71 00", ti.body[:2])
	}
	ti.tag = binary.BigEndian.Uint64(ti.body[2:10])
	ti.epoch, ti.pfxLen = ti.body[10], ti.body[11]
	return ti, nil
}

// strip removes a tag that stands alone (tagInfo.alone) and restores the
// headers as docs/wire.md §2.3 says the tagger found them: options (or extension
// headers) before and after it, lengths, next header, checksum.
func strip(p []byte) ([]byte, error) {
	ti, err := findTag(p)
	if err != nil {
		return nil, err
	}
	if !ti.alone {
		return nil, fmt.Errorf("the tag shares a Destination Options header with other options")
	}
	q := bytes.Clone(p)
	if q[0]>>4 == 4 {
		q = append(q[:ti.at], q[ti.at+16:]...)
		q[0] -= 4 // IHL counts 32-bit words
		binary.BigEndian.PutUint16(q[2:], uint16(len(q)))
		fixIPv4Checksum(q)
		return q, nil
	}
	// The tag header follows the IPv6 header or its Hop-by-Hop header.
	prev, off := 6, 40
	if q[6] == lab.ProtoHopByHop {
		prev, off = 40, 40+(int(q[41])+1)*8
	}
	if q[prev] != lab.ProtoDestOpts {
		return nil, fmt.Errorf("tag header not where expected")
	}
	q[prev] = q[off]
	q = append(q[:off], q[off+16:]...)
	binary.BigEndian.PutUint16(q[4:], uint16(len(q)-40))
	return q, nil
}

func fixIPv4Checksum(p []byte) {
	ihl := int(p[0]&0xf) * 4
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], lab.Checksum(p[:ihl], 0))
}

// normalised returns a copy of p with the hop count set to hops and, for
// IPv4, the header checksum recomputed: what is left to compare once the
// router's legitimate edits are taken out.
func normalised(p []byte, hops uint8) []byte {
	q := bytes.Clone(p)
	if q[0]>>4 == 4 {
		q[8] = hops
		fixIPv4Checksum(q)
	} else {
		q[7] = hops
	}
	return q
}

func hopCount(p []byte) uint8 {
	if p[0]>>4 == 4 {
		return p[8]
	}
	return p[7]
}
