package engine

import (
	"testing"

	"github.com/psavd/psavd/ports"
	"github.com/psavd/psavd/ports/mem"
)

// lispFrames returns, for each LISP case, the frame AS 65001's host sends
// (encap input) and the frame the ITR sends (decap input).
func lispFrames(tb testing.TB) []struct {
	name       string
	in, encaps []byte
} {
	var out []struct {
		name       string
		in, encaps []byte
	}
	for _, c := range []struct {
		name           string
		in             string
		outer4, outer6 bool // mapping RLOC family per EID family: true = IPv4
	}{
		{"ipv4-in-ipv4", v4In, true, false},
		{"ipv6-in-ipv6", v6In, true, false},
		{"ipv6-in-ipv4", v6In, true, true},
		{"ipv4-in-ipv6", v4In, false, false},
	} {
		o4, o6 := rloc2v6, rloc2v6
		if c.outer4 {
			o4 = rloc2v4
		}
		if c.outer6 {
			o6 = rloc2v4
		}
		e := lispXTR(tb, 65001, Policy{}, remoteEIDs(o4, o6))
		pkt := process(e.NewProcessor(0), mustHex(tb, c.in), vecNow)
		if pkt.Out != 1 {
			tb.Fatalf("%s: not encapsulated", c.name)
		}
		out = append(out, struct {
			name       string
			in, encaps []byte
		}{c.name, mustHex(tb, c.in), append([]byte(nil), pkt.Frame()...)})
	}
	return out
}

// benchRouted is benchPipeline for a routed engine: every port transmits to
// one discarding mem port.
func benchRouted(b *testing.B, e *Engine, in int, frame []byte) {
	src := mem.New("in", benchBatch)
	src.Loop(frame)
	dst := mem.New("out", benchBatch)
	dst.Discard = true
	outs := make([]ports.Port, len(e.spec.Ports))
	for i := range outs {
		outs[i] = dst
	}
	l := &Loop{In: in, Port: src, Out: outs}
	pr := e.NewProcessor(in)
	batch := ports.NewBatch(benchBatch)
	fwd := make([][]ports.Packet, len(outs))
	for i := range fwd {
		fwd[i] = make([]ports.Packet, 0, benchBatch)
	}
	o := &RunOptions{}
	t := e.Tables()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		src.Receive(batch, 0)
		pr.Process(batch, t, vecNow)
		pr.forward(batch, l, fwd, o)
		src.Release(batch)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/pkt")
	for _, r := range Reasons() {
		if pr.Counters.Drops[r].Load() != 0 {
			b.Fatalf("benchmark traffic was dropped: %v", drops(pr))
		}
	}
}

// BenchmarkEncap: tag + encapsulate at AS 65001's ITR (routed, mem ports).
func BenchmarkEncap(b *testing.B) {
	for _, c := range lispFrames(b) {
		o4, o6 := rloc2v4, rloc2v6
		switch c.name {
		case "ipv6-in-ipv4":
			o6 = rloc2v4
		case "ipv4-in-ipv6":
			o4 = rloc2v6
		}
		e := lispXTR(b, 65001, Policy{}, remoteEIDs(o4, o6))
		b.Run(c.name, func(b *testing.B) { benchRouted(b, e, 0, c.in) })
	}
}

// BenchmarkDecap: decapsulate + validate + strip at AS 65002's ETR.
func BenchmarkDecap(b *testing.B) {
	for _, c := range lispFrames(b) {
		e := lispXTR(b, 65002, Policy{}, nil)
		b.Run(c.name, func(b *testing.B) { benchRouted(b, e, 1, c.encaps) })
	}
}

// TestLISPAllocs keeps encapsulation and decapsulation allocation-free in
// make test (as TestPipelineAllocs does for tagging).
func TestLISPAllocs(t *testing.T) {
	for _, c := range lispFrames(t) {
		o4, o6 := rloc2v4, rloc2v6
		switch c.name {
		case "ipv6-in-ipv4":
			o6 = rloc2v4
		case "ipv4-in-ipv6":
			o4 = rloc2v6
		}
		for _, side := range []struct {
			e     *Engine
			in    int
			frame []byte
		}{{lispXTR(t, 65001, Policy{}, remoteEIDs(o4, o6)), 0, c.in}, {lispXTR(t, 65002, Policy{}, nil), 1, c.encaps}} {
			pr := side.e.NewProcessor(side.in)
			batch := ports.NewBatch(1)
			buf := make([]byte, ports.Headroom+ports.MaxFrame)
			tb := side.e.Tables()
			allocs := testing.AllocsPerRun(100, func() {
				n := copy(buf[ports.Headroom:], side.frame)
				batch.Pkts = append(batch.Pkts[:0], ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
				pr.Process(batch, tb, vecNow)
			})
			if allocs != 0 {
				t.Errorf("%s port %d: %.1f allocations per packet", c.name, side.in, allocs)
			}
			if batch.Pkts[0].Out == ports.Drop {
				t.Errorf("%s port %d: dropped: %v", c.name, side.in, drops(pr))
			}
		}
	}
	// A miss (queued for the ITR) allocates nothing either.
	e := lispXTR(t, 65001, Policy{}, nil)
	pr := e.NewProcessor(0)
	batch := ports.NewBatch(1)
	buf := make([]byte, ports.Headroom+ports.MaxFrame)
	frame := mustHex(t, v4In)
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		n := copy(buf[ports.Headroom:], frame)
		buf[ports.Headroom+33] = byte(i) // a new destination each time
		i++
		batch.Pkts = append(batch.Pkts[:0], ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
		pr.Process(batch, e.Tables(), vecNow)
	})
	if allocs != 0 {
		t.Errorf("miss: %.1f allocations per packet", allocs)
	}
}
