package capture

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/ports"
	"github.com/psavd/psavd/ports/pcap"
)

// An IPv4/UDP frame from 198.51.100.10 to 203.0.113.10. Arriving on the
// EGRESS port of AS 65001's ABR (198.51.100.0/24 is local) it is dropped
// spoofed-local.
const frameHex = "020000000002020000000001080045000025123400004011024cc633640acb00710a1092003500110000707361762074657374"

func TestWriterRotatesAndKeepsFrames(t *testing.T) {
	eng, err := engine.New(engine.Spec{Ports: []engine.PortSpec{
		{Name: "inside", Role: engine.RoleIngress, Peer: 1},
		{Name: "outside", Role: engine.RoleEgress, Peer: 0},
	}})
	if err != nil {
		t.Fatal(err)
	}
	b := engine.NewPrefixTableBuilder()
	if err := b.Add(netip.MustParsePrefix("198.51.100.0/24"), 0); err != nil {
		t.Fatal(err)
	}
	eng.Publish(&engine.Tables{Period: 60, Prefixes: b.Table(), Members: []engine.Member{{ASN: 65001, Local: true, TagPeer: -1, ValidatePeer: -1}}})

	pr := eng.NewProcessor(1)
	pr.EnableCapture(engine.CaptureConfig{Every: 1, Snap: 64, Slots: 64})
	dir := t.TempDir()
	// Each record is 16 + 51 octets; 200 octets hold the header and two.
	w, err := New(dir, 64, 200, 2, []string{"inside", "outside"})
	if err != nil {
		t.Fatal(err)
	}
	w.Add(pr)
	frame, _ := hex.DecodeString(frameHex)
	batch := ports.NewBatch(7)
	for i := 0; i < 7; i++ {
		buf := make([]byte, ports.Headroom+ports.MaxFrame)
		n := copy(buf[ports.Headroom:], frame)
		batch.Pkts = append(batch.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
	}
	pr.Process(batch, eng.Tables(), 1000)
	if err := w.Drain(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Written != 7 {
		t.Fatalf("written %d, want 7", w.Written)
	}
	// 7 records, 2 per file: current (1), .1 (2), .2 (2); the oldest 2 rotated away.
	base := filepath.Join(dir, "outside-spoofed-local.pcap")
	total := 0
	for _, p := range []string{base, base + ".1", base + ".2"} {
		frames, err := pcap.ReadFile(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, f := range frames {
			if !bytes.Equal(f, frame) {
				t.Fatalf("%s holds %x, want the dropped frame", p, f)
			}
		}
		total += len(frames)
	}
	if total != 5 {
		t.Fatalf("%d frames kept, want 5 (keep = 2 rotated files)", total)
	}
	if _, err := os.Stat(base + ".3"); err == nil {
		t.Fatal("more rotated files than keep")
	}
}
