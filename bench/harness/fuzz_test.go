package harness

import (
	"encoding/binary"
	"testing"
)

// FuzzReadTrailer: whatever arrives on the probe socket, readTrailer
// neither panics nor accepts a frame without the magic, and reads back
// what putTrailer wrote.
func FuzzReadTrailer(f *testing.F) {
	f.Add(make([]byte, MinProbeSize), uint32(1), int64(2))
	f.Add([]byte{}, uint32(0), int64(0))
	f.Add(make([]byte, 1514), uint32(0xffffffff), int64(-1))
	f.Fuzz(func(t *testing.T, b []byte, seq uint32, ns int64) {
		s, n, ok := readTrailer(b)
		if ok && binary.BigEndian.Uint32(b[len(b)-ProbeTrailer:]) != probeMagic {
			t.Fatalf("accepted without the magic: %d %d", s, n)
		}
		if len(b) < MinProbeSize {
			return
		}
		putTrailer(b, seq, ns)
		if s, n, ok := readTrailer(b); !ok || s != seq || n != ns {
			t.Fatalf("round trip: %d %d %v, want %d %d", s, n, ok, seq, ns)
		}
	})
}

// FuzzParse: the scenario parser never panics, and what it accepts has a
// base point and cases.
func FuzzParse(f *testing.F) {
	f.Add([]byte(goodScenario))
	f.Add([]byte(`name = "x"` + "\n" + `cases = ["psavd-tag"]`))
	f.Add([]byte(`[[mix]]` + "\n" + `ipv6 = nan`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse("f.toml", b)
		if err != nil {
			return
		}
		if len(s.Cases) == 0 || len(s.Points()) == 0 || s.Count() == 0 {
			t.Fatalf("accepted an empty scenario: %+v", s)
		}
	})
}

// FuzzParseProcStat: /proc text never makes the parsers panic.
func FuzzParseProcStat(f *testing.F) {
	f.Add("4242 (psavd) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 7 0")
	f.Add("cpu1 200 2 30 6000 8 5 6 1 0 0\n")
	f.Fuzz(func(t *testing.T, s string) {
		parseProcStat(s)
		parseCPUBusy(s, []int{0, 1})
	})
}
