package engine

import (
	"net/netip"
	"testing"

	"github.com/psavd/psavd/ports"
)

// TestLookupMemoForgottenOnPublish: one Processor, the same flow before
// and after a publication that moves its destination prefix out of the
// alliance and its source prefix to the other member: the batches after
// it are judged by the new snapshot, never by the memo of the old one.
func TestLookupMemoForgottenOnPublish(t *testing.T) {
	for _, frame := range []string{v4In, v6In} {
		e := abr(t, 65001, vecNow)
		pr := e.NewProcessor(0)
		judge := func() (tagged, forwarded, spoofed uint64) {
			t.Helper()
			b := ports.NewBatch(2)
			for range 2 {
				buf := make([]byte, ports.Headroom+ports.MaxFrame)
				n := copy(buf[ports.Headroom:], mustHex(t, frame))
				b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
			}
			pr.Process(b, e.Tables(), vecNow)
			return pr.Counters.Actions[ActTagged].Load(), pr.Counters.Actions[ActForwarded].Load(), pr.Counters.Drops[DropSpoofedInside].Load()
		}
		if tagged, _, _ := judge(); tagged != 2 {
			t.Fatalf("before the publication: %d of 2 tagged", tagged)
		}
		// The destination's prefixes leave the alliance.
		t2 := testTables(t, 65001, vecNow)
		b := NewPrefixTableBuilder()
		for _, p := range []string{"198.51.100.0/24", "2001:db8:1::/48"} {
			if err := b.Add(netip.MustParsePrefix(p), 0); err != nil {
				t.Fatal(err)
			}
		}
		t2.Prefixes = b.Table()
		e.Publish(t2)
		if tagged, forwarded, _ := judge(); tagged != 2 || forwarded != 2 {
			t.Fatalf("after the destination left: %d tagged (want still 2), %d forwarded (want 2)", tagged, forwarded)
		}
		// The source's prefixes now belong to the other member: spoofed.
		t3 := testTables(t, 65001, vecNow)
		b = NewPrefixTableBuilder()
		for _, p := range []string{"198.51.100.0/24", "2001:db8:1::/48", "203.0.113.0/24", "2001:db8:2::/48"} {
			if err := b.Add(netip.MustParsePrefix(p), 1); err != nil {
				t.Fatal(err)
			}
		}
		t3.Prefixes = b.Table()
		e.Publish(t3)
		if _, _, spoofed := judge(); spoofed != 2 {
			t.Fatalf("after the source moved to AS65002: %d of 2 dropped spoofed-inside", spoofed)
		}
	}
}
