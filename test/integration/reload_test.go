package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/internal/netlab"
)

// TestReloadUnderTraffic: SIGHUP swaps the tables while a stream crosses the
// ABR, and no datagram is lost. Adding AS 65002 makes the same traffic leave
// tagged; a broken file and a port change are refused and the running
// configuration stays in force. SIGTERM then leaves no XDP program behind.
func TestReloadUnderTraffic(t *testing.T) {
	skipUnlessLab(t)
	bin := psavdBinary(t)
	topo, must := newTopology(t)
	h1, err := topo.NS("hh1")
	must(err)
	abr, err := topo.NS("habr")
	must(err)
	h2, err := topo.NS("hh2")
	must(err)
	must(topo.Veth(h1, "eth0", "", abr, "in", ""))
	must(topo.Veth(abr, "out", "", h2, "eth0", ""))
	must(netlab.IP("-n", h1, "addr", "add", "198.51.100.10/24", "dev", "eth0"))
	must(netlab.IP("-n", h2, "addr", "add", "198.51.100.200/24", "dev", "eth0"))
	if _, err := netlab.Exec(h1, "ethtool", "-K", "eth0", "tx", "off"); err != nil {
		t.Skipf("ethtool: %v", err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "engine.toml")
	// AS 65001's ABR; extra is more of [psav], outsideRole the role of the
	// "outside" port (the reload steps below change both).
	base := func(extra, outsideRole string) string {
		return psavTOML(65001, "198.51.100.0/25") + extra + bumpInWirePorts(outsideRole) + metricsTOML("127.0.0.1:9100")
	}
	member65002 := memberTOML(65002, "198.51.100.128/25") + staticPeerTOML(65002, time.Now().Unix()/60-1)
	write := func(text string) { must(os.WriteFile(path, []byte(text), 0o644)) }
	write(base("", "egress"))

	node := startPsavd(t, bin, abr, path, true)
	log := node.log

	sniff, err := lab.Sniff(h2, "eth0")
	must(err)
	defer sniff.Close()
	// A listener at h2, so that it does not answer port-unreachable (which
	// would fail the sender's next write on its connected socket).
	var sink net.PacketConn
	must(netlab.Do(h2, func() error {
		var err error
		sink, err = net.ListenPacket("udp", "198.51.100.200:5555")
		return err
	}))
	defer sink.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
		}
	}()

	// The stream: numbered datagrams h1 → h2 every 2 ms until stopped.
	var sent atomic.Int64
	stop := make(chan struct{})
	streamDone := make(chan error, 1)
	go func() {
		streamDone <- netlab.Do(h1, func() error {
			c, err := net.Dial("udp", "198.51.100.200:5555")
			if err != nil {
				return err
			}
			defer c.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return nil
				case <-time.After(2 * time.Millisecond):
				}
				if _, err := fmt.Fprintf(c, "reload-seq-%06d", i); err != nil {
					return err
				}
				sent.Add(1)
			}
		})
	}()

	ctx := context.Background()
	counter := func(metric, what string) float64 {
		c, err := lab.Scrape(ctx, abr, "127.0.0.1:9100")
		must(err)
		return c.Total(metric, what)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("untagged traffic", func() bool { return counter("packets", "forwarded") >= 20 })

	// 1. AS 65002 joins: the same traffic now leaves tagged.
	write(base(member65002, "egress"))
	must(node.cmd.Process.Signal(syscall.SIGHUP))
	waitFor("tagged traffic after reload", func() bool { return counter("packets", "tagged") >= 20 })

	// 2. A broken file: refused, tagging goes on.
	write(base(member65002, "egress") + "\nbogus = 1\n")
	must(node.cmd.Process.Signal(syscall.SIGHUP))
	waitFor("the broken file to be refused", func() bool { return strings.Contains(log.String(), "bogus: unknown key") })
	before := counter("packets", "tagged")
	waitFor("tagging to go on after a refused reload", func() bool { return counter("packets", "tagged") >= before+20 })

	// 3. A port change: refused, needs a restart.
	write(base(member65002, "trust"))
	must(node.cmd.Process.Signal(syscall.SIGHUP))
	waitFor("the port change to be refused", func() bool {
		return strings.Contains(log.String(), "needs a restart") && strings.Contains(log.String(), "port[1].role changed")
	})
	before = counter("packets", "tagged")
	waitFor("tagging to go on", func() bool { return counter("packets", "tagged") >= before+20 })

	close(stop)
	must(<-streamDone)
	n := int(sent.Load())
	// Every datagram sent arrives: none lost across three reloads.
	waitFor("every datagram at h2", func() bool {
		seen := map[string]bool{}
		for _, f := range sniff.Frames() {
			if i := bytes.Index(f.Frame, []byte("reload-seq-")); i >= 0 && !f.Outgoing && i+17 <= len(f.Frame) {
				seen[string(f.Frame[i:i+17])] = true
			}
		}
		return len(seen) == n
	})
	if n < 60 {
		t.Fatalf("only %d datagrams sent", n)
	}
	t.Logf("%d datagrams across three reloads, none lost", n)

	// SIGTERM: the ports' XDP programs go with the process (bpf_links).
	for _, ifname := range []string{"in", "out"} {
		out, err := netlab.Exec(abr, "ip", "link", "show", "dev", ifname)
		must(err)
		if !strings.Contains(out, "xdp") {
			t.Fatalf("no XDP program on %s while psavd runs:\n%s", ifname, out)
		}
	}
	node.Stop()
	for _, ifname := range []string{"in", "out"} {
		out, err := netlab.Exec(abr, "ip", "link", "show", "dev", ifname)
		must(err)
		if strings.Contains(out, "xdp") {
			t.Fatalf("XDP program left on %s after SIGTERM:\n%s", ifname, out)
		}
	}
}
