package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports/pcap"
)

// Frames from engine/testdata/vectors.py (an independent implementation of
// docs/wire.md §2.3–2.5): S(e0) = 00 … 1f, e0 = 29000000, tagged in epoch e0+5.
const (
	replayV4In  = "020000000002020000000001080045000025123400004011024cc633640acb00710a1092003500110000707361762074657374"
	replayV4Out = "020000000002020000000001080049000035123400004011496cc633640acb00710a9e0e7100c6abe194f26dc4f8451801011092003500110000707361762074657374"
	replayV6In  = "02000000000202000000000186dd600000000011114020010db800010000000000000000001020010db80002000000000000000000101092003500110000707361762074657374"
	replayV6Out = "02000000000202000000000186dd6000000000213c4020010db800010000000000000000001020010db800020000000000000000001011013b0c7100e50148a618b4dfcc45301092003500110000707361762074657374"
	replayAt    = (29000000+5)*60 + 30
)

func replayConfig(local, remote int) string {
	return strings.NewReplacer("LOCAL", strconv.Itoa(local), "REMOTE", strconv.Itoa(remote)).Replace(`
[psav]
asn = LOCAL
epoch_seconds = 60
t0 = 0
[[psav.member]]
asn = 65001
prefixes = ["198.51.100.0/24", "2001:db8:1::/48"]
[[psav.member]]
asn = 65002
prefixes = ["203.0.113.0/24", "2001:db8:2::/48"]
[[psav.static_peer]]
asn = REMOTE
start_epoch = 29000000
s0 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
[[port]]
name = "inside"
interface = "in0"
role = "ingress"
peer = "outside"
[[port]]
name = "outside"
interface = "out0"
role = "egress"
peer = "inside"
`)
}

func writePcap(t *testing.T, path string, frames ...[]byte) {
	t.Helper()
	if err := pcap.WriteFile(path, time.Unix(replayAt, 0), frames...); err != nil {
		t.Fatal(err)
	}
}

func readPcap(t *testing.T, path string) [][]byte {
	t.Helper()
	frames, err := pcap.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return frames
}

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReplayBinary runs the real psavd binary's replay command (docs/wire.md §4.2)
// on both ABRs of the vectors: AS 65001 tags exactly as the spec says, AS
// 65002 validates and restores the original frames, and a spoofed frame is
// left out and counted on stderr.
func TestReplayBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "psavd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for name, cfg := range map[string]string{"as65001.toml": replayConfig(65001, 65002), "as65002.toml": replayConfig(65002, 65001)} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := func(n string) string { return filepath.Join(dir, n) }
	replay := func(cfg, in, out, port string, at bool) string {
		args := []string{"replay", "-config", p(cfg), "-in", p(in), "-out", p(out), "-port", port}
		if at {
			args = append(args, "-at", strconv.Itoa(replayAt))
		}
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("replay: %v\n%s", err, stderr.String())
		}
		return stderr.String()
	}

	spoofed := unhex(t, replayV4In)
	copy(spoofed[26:30], []byte{203, 0, 113, 50}) // from inside, forging AS 65002's address
	header.IPv4(spoofed[14:]).UpdateChecksum()

	writePcap(t, p("in.pcap"), unhex(t, replayV4In), spoofed, unhex(t, replayV6In))
	report := replay("as65001.toml", "in.pcap", "tagged.pcap", "inside", true)
	got := readPcap(t, p("tagged.pcap"))
	want := [][]byte{unhex(t, replayV4Out), unhex(t, replayV6Out)}
	if len(got) != 2 || !bytes.Equal(got[0], want[0]) || !bytes.Equal(got[1], want[1]) {
		t.Fatalf("tagged frames:\n got %x\nwant %x", got, want)
	}
	for _, line := range []string{"tagged", "drop spoofed-inside"} {
		if !strings.Contains(report, line) {
			t.Errorf("report lacks %q:\n%s", line, report)
		}
	}

	// Without -at each frame is judged at its own capture time (the same here).
	report = replay("as65002.toml", "tagged.pcap", "restored.pcap", "outside", false)
	got = readPcap(t, p("restored.pcap"))
	if len(got) != 2 || !bytes.Equal(got[0], unhex(t, replayV4In)) || !bytes.Equal(got[1], unhex(t, replayV6In)) {
		t.Fatalf("restored frames differ from the originals:\n%x\n%s", got, report)
	}
	if !strings.Contains(report, "validated") {
		t.Errorf("report lacks validated:\n%s", report)
	}
}
