package header_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/psavd/psavd/engine/header"
)

// The example of RFC 1071 §3: the sum of 00 01 f2 03 f4 f5 f6 f7 is ddf2.
func TestChecksumRFC1071(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := header.Checksum(b, 0); got != 0xddf2 {
		t.Fatalf("sum %#04x, want 0xddf2", got)
	}
	// Byte order independence (RFC 1071 §2 (B)): the swapped data sums to
	// the swapped sum.
	sw := []byte{0x01, 0x00, 0x03, 0xf2, 0xf5, 0xf4, 0xf7, 0xf6}
	if got := header.Checksum(sw, 0); got != 0xf2dd {
		t.Fatalf("swapped sum %#04x, want 0xf2dd", got)
	}
	// A well-known IPv4 header (checksum b861).
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if !header.IPv4(h).ChecksumValid() {
		t.Fatal("valid header refused")
	}
	header.IPv4(h).UpdateChecksum()
	if header.IPv4(h).Checksum() != 0xb861 {
		t.Fatalf("checksum %#04x, want 0xb861", header.IPv4(h).Checksum())
	}
}

// checkSum asserts the properties of the one's complement sum on b: an odd
// tail is padded with zero, the sum of a concatenation at an even offset is
// the combination of the parts', an initial value is added, and data
// carrying the complement of its own sum sums to 0xffff.
func checkSum(t *testing.T, b []byte, split int) {
	t.Helper()
	s := header.Checksum(b, 0)
	if len(b)%2 == 1 {
		if p := header.Checksum(append(bytes.Clone(b), 0), 0); p != s {
			t.Fatalf("odd length %d: %#04x, padded %#04x", len(b), s, p)
		}
	}
	split &^= 1
	if split <= len(b) {
		if c := header.ChecksumCombine(header.Checksum(b[:split], 0), header.Checksum(b[split:], 0)); c != s && !(c|s == 0xffff && c&s == 0) {
			t.Fatalf("len %d split %d: %#04x, combined %#04x", len(b), split, s, c)
		}
		if c := header.Checksum(b[split:], header.Checksum(b[:split], 0)); c != s && !(c|s == 0xffff && c&s == 0) {
			t.Fatalf("len %d split %d: %#04x, chained %#04x", len(b), split, s, c)
		}
	}
	w := append(bytes.Clone(b), 0, 0)
	if len(b)%2 == 1 {
		w = append(bytes.Clone(b), 0, 0, 0)
	}
	binary.BigEndian.PutUint16(w[len(w)-2:], ^s)
	if header.Checksum(w, 0) != 0xffff {
		t.Fatalf("len %d: data with its checksum sums to %#04x", len(b), header.Checksum(w, 0))
	}
}

func TestChecksumProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 200 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		checkSum(t, b, r.IntN(n+1))
	}
	all := bytes.Repeat([]byte{0xff}, 65535)
	checkSum(t, all, 1000)
	if header.Checksum(nil, 0x1234) != 0x1234 {
		t.Fatal("initial value not returned for no data")
	}
}

// ChecksumUpdate agrees with a full recomputation for any change of words.
func TestChecksumUpdate(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		h := make([]byte, 20)
		for i := range h {
			h[i] = byte(r.Uint32())
		}
		h[0] = 0x45
		header.IPv4(h).UpdateChecksum()
		// Change 1–4 words (not the checksum's).
		var removed, added uint64
		for range 1 + r.IntN(4) {
			i := 2 * (1 + r.IntN(9)) // not word 0: IHL stays 5
			if i == 10 {
				continue
			}
			old := binary.BigEndian.Uint16(h[i:])
			nw := uint16(r.Uint32())
			if r.IntN(8) == 0 {
				nw = 0
			}
			removed += uint64(old)
			added += uint64(nw)
			binary.BigEndian.PutUint16(h[i:], nw)
		}
		header.IPv4(h).AdjustChecksum(header.Fold(removed), header.Fold(added))
		if !header.IPv4(h).ChecksumValid() {
			t.Fatalf("incremental update gives an invalid header % x", h)
		}
	}
}

func FuzzChecksum(f *testing.F) {
	f.Add([]byte{1, 2, 3}, 2)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		if split < 0 {
			split = -split
		}
		checkSum(t, b, split%(len(b)+1))
	})
}
