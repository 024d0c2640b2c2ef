package engine

import (
	"bytes"
	"testing"

	"github.com/psavd/psavd/ports"
)

func TestDropCapture(t *testing.T) {
	e := abr(t, 65002, vecNow)
	pr := e.NewProcessor(1) // AS 65002's EGRESS port: untagged member traffic is dropped no-tag
	pr.EnableCapture(CaptureConfig{Every: 3, PerSecond: 4, Snap: 40, Slots: 4})
	frame := mustHex(t, v4In)
	b := ports.NewBatch(16)
	bufs := make([][]byte, 16)
	for i := range bufs {
		bufs[i] = make([]byte, ports.Headroom+ports.MaxFrame)
	}
	send := func(n int, now int64) {
		b.Pkts = b.Pkts[:0]
		for i := 0; i < n; i++ {
			m := copy(bufs[i][ports.Headroom:], frame)
			b.Pkts = append(b.Pkts, ports.Packet{Buf: bufs[i], Off: ports.Headroom, Len: m})
		}
		pr.Process(b, e.Tables(), now)
	}
	// 12 drops in one second: every 3rd is sampled (4), the rate allows 4.
	send(12, vecNow)
	var got []Captured
	over := pr.DrainCapture(func(c *Captured) {
		cp := *c
		cp.Data = append([]byte(nil), c.Data...)
		got = append(got, cp)
	})
	if len(got) != 4 || over != 0 {
		t.Fatalf("captured %d (overflow %d), want 4", len(got), over)
	}
	for _, c := range got {
		if c.Reason != DropNoTag || c.Port != 1 || c.Length != len(frame) || !bytes.Equal(c.Data, frame[:40]) || c.UnixNano == 0 {
			t.Fatalf("captured %+v", c)
		}
	}
	// Same second again: the rate limit is spent.
	send(12, vecNow)
	n := 0
	pr.DrainCapture(func(*Captured) { n++ })
	if n != 0 {
		t.Fatalf("rate limit not applied: %d more captured", n)
	}
	// Next second, nobody draining: 4 slots fill, the rest overflow.
	send(15, vecNow+1)
	send(15, vecNow+2)
	n = 0
	over = pr.DrainCapture(func(*Captured) { n++ })
	if n != 4 || over != 4 {
		t.Fatalf("captured %d, overflow %d; want 4 and 4", n, over)
	}

	// Capture costs no allocation on the packet path.
	allocs := testing.AllocsPerRun(50, func() { send(12, vecNow+3) })
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch with capture on", allocs)
	}

	// Only the chosen reasons.
	pr2 := e.NewProcessor(1)
	var only CaptureConfig
	only.Every = 1
	only.Reasons[DropBadTag] = true
	pr2.EnableCapture(only)
	b.Pkts = b.Pkts[:0]
	m := copy(bufs[0][ports.Headroom:], frame)
	b.Pkts = append(b.Pkts, ports.Packet{Buf: bufs[0], Off: ports.Headroom, Len: m})
	pr2.Process(b, e.Tables(), vecNow)
	n = 0
	pr2.DrainCapture(func(*Captured) { n++ })
	if n != 0 {
		t.Fatal("a no-tag drop was captured with only bad-tag selected")
	}
}
