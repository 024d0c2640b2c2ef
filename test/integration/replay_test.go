package integration

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/ports/pcap"

	"github.com/psavd/psavd/deploy/lab"
)

// TestReplayTagRoundTrip runs the lab's probe packets through `psavd
// replay` (docs/wire.md §4.2) with the lab's generated engine.toml files: abr1's
// inside port adds the tag, abr2's outside port validates and strips it. It
// needs neither root nor AF_XDP, so it judges the engine's tags against the
// reference on every machine, and tells an engine fault from a port fault
// when the live tests fail.
func TestReplayTagRoundTrip(t *testing.T) {
	bin := psavdBinary(t)
	topo, err := lab.Parse(lab.StaticTopology)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	env := &lab.Env{Topo: topo, Run: "a0b1c2", S0: strings.Repeat("5a", 32), StartEpoch: topo.Epoch(now) - 1}
	dir := t.TempDir()
	for _, n := range []string{"abr1", "abr2"} {
		b, err := env.EngineConfig(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, n+".toml"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h1MAC, _ := net.ParseMAC("02:00:00:01:00:10")
	trMAC, _ := net.ParseMAC("02:00:00:01:00:01")
	probes := legitimateProbes(env.Run)
	var frames [][]byte
	for _, p := range probes {
		frames = append(frames, header.AppendEthernet(nil, trMAC, h1MAC, p.ip))
	}
	writePcap(t, filepath.Join(dir, "sent.pcap"), frames)
	at := now.Unix()
	replay := func(node, port, in, out string) [][]byte {
		cmd := exec.Command(bin, "replay", "-config", filepath.Join(dir, node+".toml"),
			"-in", filepath.Join(dir, in), "-out", filepath.Join(dir, out), "-at", strconv.FormatInt(at, 10), "-port", port)
		report, err := cmd.CombinedOutput()
		t.Logf("psavd replay through %s/%s:\n%s", node, port, report)
		if err != nil {
			t.Fatalf("psavd replay: %v", err)
		}
		return readPcap(t, filepath.Join(dir, out))
	}
	tagged := replay("abr1", "inside", "sent.pcap", "tagged.pcap")
	if len(tagged) != len(probes) {
		t.Fatalf("abr1 passed %d of %d frames", len(tagged), len(probes))
	}
	for i, p := range probes {
		checkTag(t, env, p.name+": tagged by abr1", lab.IPOf(tagged[i]), p.ip)
	}
	stripped := replay("abr2", "outside", "tagged.pcap", "stripped.pcap")
	if len(stripped) != len(probes) {
		t.Fatalf("abr2 passed %d of %d frames", len(stripped), len(probes))
	}
	for i, p := range probes {
		if !bytes.Equal(stripped[i], frames[i]) {
			t.Errorf("%s: abr2 did not restore the frame h1 sent:\n sent % x\n got  % x", p.name, frames[i], stripped[i])
		}
	}
}

func writePcap(t *testing.T, path string, frames [][]byte) {
	t.Helper()
	if err := pcap.WriteFile(path, time.Now(), frames...); err != nil {
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
