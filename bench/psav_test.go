package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"os/exec"
	"testing"
	"time"

	"github.com/psavd/psavd/bench/gen"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/psavref"
)

// The benchmark's own tag code (written from docs/wire.md) agrees with the
// engine's on keys and tags.
func TestTagAgreesWithEngine(t *testing.T) {
	k := Keys{E0: 100}
	copy(k.S0[:], "0123456789abcdef0123456789abcdef")
	for _, e := range []uint64{100, 101, 107} {
		got, err := psavref.Key(k.S0, k.E0, e)
		if err != nil {
			t.Fatal(err)
		}
		want, ok := engine.NewStateMachine(k.E0, engine.State(k.S0)).Key(e)
		if !ok || got != [16]byte(want) {
			t.Fatalf("K(%d) = %x, engine %x", e, got, want)
		}
	}
	if _, err := psavref.Key(k.S0, k.E0, 99); err == nil {
		t.Fatal("key before e0")
	}

	frames, err := ValidatingFrames(k, time.Unix(int64(k.E0+5)*EpochSeconds+1, 0))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := psavref.Key(k.S0, k.E0, k.E0+5)
	k0, k1 := engine.Key(key).Halves()
	for i, f := range frames {
		if len(f) != gen.FrameSize+16 {
			t.Fatalf("tagged frame of %d octets", len(f))
		}
		var src, dst [16]byte
		var opt []byte
		var first, pfx byte
		if i == 0 {
			ip := f[14:]
			if ip[0] != 0x49 || binary.BigEndian.Uint16(ip[2:]) != uint16(len(ip)) || !header.IPv4(ip).ChecksumValid() {
				t.Fatalf("IPv4 header % x", ip[:36])
			}
			src = [16]byte{10: 0xff, 11: 0xff, 12: 203, 13: 0, 14: 113, 15: 10}
			dst = [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 51, 14: 100, 15: 10}
			if ip[20] != 0x9e || ip[21] != 14 || ip[34] != 1 || ip[35] != 1 {
				t.Fatalf("IPv4 option % x", ip[20:36])
			}
			opt, first, pfx = ip[22:34], ip[36], 24
		} else {
			ip := f[14:]
			if ip[6] != 60 || binary.BigEndian.Uint16(ip[4:]) != uint16(len(ip)-40) {
				t.Fatalf("IPv6 header % x", ip[:40])
			}
			src, dst = gen.OutsideV6.As16(), gen.InsideV6.As16()
			d := ip[40:56]
			if d[0] != 17 || d[1] != 1 || d[2] != 0x3b || d[3] != 12 {
				t.Fatalf("Destination Options % x", d)
			}
			opt, first, pfx = d[4:16], ip[56], 48
		}
		tag := engine.ComputeTag(k0, k1, &src, &dst, first, pfx)
		if opt[0] != 0x71 || opt[1] != 0 || binary.BigEndian.Uint64(opt[2:10]) != tag ||
			opt[10] != byte(k.E0+5) || opt[11] != pfx {
			t.Fatalf("frame %d option data % x, want tag %x", i, opt, tag)
		}
	}
}

// psavdBinary builds cmd/psavd once per test binary.
func psavdBinary(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no Go toolchain to build psavd")
	}
	bin, err := BuildPsavd(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestPsavd runs psavd tagging and validating through short benchmarks:
// every frame that comes out is tagged (tagging) or stripped back to the
// original (validating). Rates are logged, not asserted.
func TestPsavd(t *testing.T) {
	skipUnlessSupported(t)
	if testing.Short() {
		t.Skip("builds and runs psavd")
	}
	bin := psavdBinary(t)
	keys, err := NewKeys(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	t.Run("tag", func(t *testing.T) {
		sc := short()
		sc.Check = AllTagged
		d := Psavd(bin, t.TempDir(), keys, false)
		d.Output = &out
		r, err := Run(context.Background(), sc, d)
		if err != nil {
			t.Fatalf("%v\npsavd:\n%s", err, out.String())
		}
		t.Log(r)
		if r.Delivered.IPv4Options == 0 || r.Delivered.IPv6DestOpt == 0 {
			t.Fatalf("both families should be tagged: %v", r.Delivered)
		}
		t.Logf("psavd counters: %v", PsavdCounters(d.Log()))
	})
	out.Reset()
	t.Run("validate", func(t *testing.T) {
		frames, err := ValidatingFrames(keys, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		sc := short()
		sc.Frames = frames
		sc.Check = NoneTagged
		d := Psavd(bin, t.TempDir(), keys, true)
		d.Output = &out
		r, err := Run(context.Background(), sc, d)
		if err != nil {
			t.Fatalf("%v\npsavd:\n%s", err, out.String())
		}
		t.Log(r)
		if r.Delivered.IPv4 == 0 || r.Delivered.IPv6 == 0 {
			t.Fatalf("both families should be validated and stripped: %v\npsavd:\n%s", r.Delivered, out.String())
		}
		c := PsavdCounters(d.Log())
		t.Logf("psavd counters: %v", c)
		if c["outside validated"] == 0 || PsavdTagDrops(c) != 0 {
			t.Fatalf("psavd did not validate every tag: %v", c)
		}
	})
}
