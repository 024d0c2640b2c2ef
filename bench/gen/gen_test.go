package gen

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/internal/netlab"
)

var (
	genMAC  = net.HardwareAddr{0x02, 0, 0, 0, 0x0a, 0x01}
	sinkMAC = net.HardwareAddr{0x02, 0, 0, 0, 0x0b, 0x01}
)

// direct builds gen ⇄ sink over one veth pair (g0 in the generator's
// namespace, s0 in the sink's) and attaches the sink; everything is removed
// when the test ends, failed or not.
func direct(tb testing.TB) (gns string, sink *Sink) {
	tb.Helper()
	gns, sns := pair(tb)
	sink, err := NewSink(sns, "s0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { sink.Close() })
	return gns, sink
}

// pair builds the two namespaces and the veth pair g0 ⇄ s0 between them.
func pair(tb testing.TB) (gns, sns string) {
	tb.Helper()
	if why := netlab.Supported(); why != "" {
		tb.Skip(why)
	}
	if why := Supported(); why != "" {
		tb.Skip(why)
	}
	topo := netlab.New()
	tb.Cleanup(func() {
		if err := topo.Close(); err != nil {
			tb.Errorf("topology: %v", err)
		}
	})
	var err error
	gns, err = topo.NS("gen")
	if err != nil {
		tb.Fatal(err)
	}
	sns, err = topo.NS("sink")
	if err != nil {
		tb.Fatal(err)
	}
	for _, ns := range []string{gns, sns} {
		if err := Quiet(ns); err != nil {
			tb.Fatal(err)
		}
	}
	// One queue per CPU on each end: a veth hands XDP frames to the peer's
	// queue numbered after the sending CPU.
	q := fmt.Sprint(runtime.NumCPU())
	if err := netlab.IP("link", "add", "g0", "netns", gns, "address", genMAC.String(),
		"numtxqueues", q, "numrxqueues", q, "type", "veth", "peer", "name", "s0", "netns", sns,
		"address", sinkMAC.String(), "numtxqueues", q, "numrxqueues", q); err != nil {
		tb.Fatal(err)
	}
	for _, nsif := range [][2]string{{gns, "g0"}, {sns, "s0"}} {
		if err := netlab.IP("-n", nsif[0], "link", "set", nsif[1], "up"); err != nil {
			tb.Fatal(err)
		}
	}
	return gns, sns
}

func newGen(tb testing.TB, ns string, frames ...[]byte) *Generator {
	tb.Helper()
	g, err := New(Config{NS: ns, Iface: "g0", Frames: frames})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.Close() })
	return g
}

// waitCount polls the sink until it has counted want frames or stopped
// moving; the deadline only turns a hang into a failure.
func waitCount(tb testing.TB, s *Sink, want uint64) Counts {
	tb.Helper()
	var last Counts
	stable := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		c, err := s.Counts()
		if err != nil {
			tb.Fatal(err)
		}
		if c.Total() >= want {
			// let stragglers (there should be none) show up
			time.Sleep(50 * time.Millisecond)
			c, _ = s.Counts()
			return c
		}
		if c == last {
			if stable++; stable > 100 {
				return c
			}
		} else {
			stable = 0
		}
		last = c
		time.Sleep(10 * time.Millisecond)
	}
	return last
}

func TestBurstArrivesExactly(t *testing.T) {
	gns, sink := direct(t)
	v4, v6, err := ScenarioFrames(genMAC, sinkMAC)
	if err != nil {
		t.Fatal(err)
	}
	g := newGen(t, gns, v4, v6)

	const k = 100_001 // odd: IPv4 takes the remainder
	if err := g.Send(k); err != nil {
		t.Fatal(err)
	}
	sent, err := g.Sent()
	if err != nil {
		t.Fatal(err)
	}
	if sent != k {
		t.Fatalf("generator counted %d frames, want %d", sent, k)
	}
	c := waitCount(t, sink, k)
	// Every frame arrives, intact enough to be classified; the templates
	// alternate per CPU, so the split is k/2 give or take one per CPU the
	// sending thread ran on.
	if c.Total() != k || c.IPv4+c.IPv6 != k {
		t.Fatalf("sink: %v, want %d frames, IPv4 and IPv6 only", c, k)
	}
	if d := int64(c.IPv4) - int64(c.IPv6); d < -4 || d > 4 {
		t.Fatalf("sink: %v, want IPv4 and IPv6 in turn", c)
	}

	// A second burst adds exactly k more.
	if err := g.Send(k); err != nil {
		t.Fatal(err)
	}
	if c := waitCount(t, sink, 2*k); c.Total() != 2*k {
		t.Fatalf("after two bursts sink counted %v, want %d", c, 2*k)
	}
}

// Signals cut Send's runs short; Send resumes each for what is still due,
// and exactly k frames arrive all the same.
func TestSendSurvivesSignals(t *testing.T) {
	gns, sink := direct(t)
	v4, v6, err := ScenarioFrames(genMAC, sinkMAC)
	if err != nil {
		t.Fatal(err)
	}
	g := newGen(t, gns, v4, v6)
	tids := make(chan int, 1)
	var interrupted atomic.Int64
	testHookSendThread = func(tid int) { tids <- tid }
	testHookInterrupted = func() { interrupted.Add(1) }
	defer func() { testHookSendThread, testHookInterrupted = nil, nil }()

	const k = 3_000_000
	done := make(chan error, 1)
	go func() { done <- g.Send(k) }()
	tid := <-tids
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for waiting := true; waiting; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			waiting = false
		case <-tick.C:
			unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)
		}
	}
	if interrupted.Load() == 0 {
		t.Skip("no run was interrupted (the machine was too fast)")
	}
	if c := waitCount(t, sink, k); c.Total() != k {
		t.Fatalf("sink counted %v after %d interruptions, want %d", c, interrupted.Load(), k)
	}
	t.Logf("%d interruptions", interrupted.Load())
}

func TestFloodIsCountedAtSink(t *testing.T) {
	gns, sink := direct(t)
	v4, _, err := ScenarioFrames(genMAC, sinkMAC)
	if err != nil {
		t.Fatal(err)
	}
	g := newGen(t, gns, v4)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := g.Flood(ctx, nil); err != nil {
		t.Fatal(err)
	}
	sent, err := g.Sent()
	if err != nil {
		t.Fatal(err)
	}
	if sent == 0 {
		t.Fatal("generator sent nothing")
	}
	c := waitCount(t, sink, sent)
	if c.Total() > sent || c.IPv4 != c.Total() {
		t.Fatalf("sink %v for %d sent", c, sent)
	}
	t.Logf("sent %d, sink %v", sent, c)
}

// BenchmarkSendToSink sends b.N frames (IPv4 and IPv6 templates in turn)
// from one thread straight into a sink and reports the rate in Mpps.
func BenchmarkSendToSink(b *testing.B) {
	gns, sink := direct(b)
	v4, v6, err := ScenarioFrames(genMAC, sinkMAC)
	if err != nil {
		b.Fatal(err)
	}
	g := newGen(b, gns, v4, v6)
	b.ResetTimer()
	start := time.Now()
	if err := g.Send(uint64(b.N)); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.StopTimer()
	c := waitCount(b, sink, uint64(b.N))
	b.ReportMetric(float64(b.N)/el.Seconds()/1e6, "Mpps")
	b.ReportMetric(float64(c.Total())/float64(b.N), "delivered/sent")
}

// BenchmarkFlood floods the sink from one thread pinned to CPU 0, one
// pinned to CPU 1, one unpinned and one per CPU, and reports the rates sent
// and delivered over one second per iteration, after a warm-up.
func BenchmarkFlood(b *testing.B) {
	for _, tc := range []struct {
		name string
		cpus []int
	}{{"cpu0", []int{0}}, {"cpu1", []int{1}}, {"unpinned", nil}, {"cpu0+1", []int{0, 1}}} {
		b.Run(tc.name, func(b *testing.B) {
			gns, sink := direct(b)
			v4, v6, err := ScenarioFrames(genMAC, sinkMAC)
			if err != nil {
				b.Fatal(err)
			}
			g := newGen(b, gns, v4, v6)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- g.Flood(ctx, tc.cpus) }()
			time.Sleep(200 * time.Millisecond)
			var sent, got uint64
			var el time.Duration
			for range b.N {
				s0, _ := g.Sent()
				c0, _ := sink.Counts()
				t0 := time.Now()
				time.Sleep(time.Second)
				s1, _ := g.Sent()
				c1, _ := sink.Counts()
				el += time.Since(t0)
				sent += s1 - s0
				got += c1.Sub(c0).Total()
			}
			cancel()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(sent)/el.Seconds()/1e6, "Mpps-sent")
			b.ReportMetric(float64(got)/el.Seconds()/1e6, "Mpps-delivered")
		})
	}
}

// TestFramesArriveIntact captures what the generator sends (templates of
// different lengths, so the program rewrites and trims the frame) with a
// packet socket behind an XDP_PASS program, and compares byte for byte.
func TestFramesArriveIntact(t *testing.T) {
	gns, sns := pair(t)
	pass, err := NewPassProgram()
	if err != nil {
		t.Fatal(err)
	}
	defer pass.Close()
	l, err := AttachXDP(sns, "s0", pass)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var fd int
	if err := netlab.Do(sns, func() error {
		ifc, err := net.InterfaceByName("s0")
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20); err != nil {
			return err
		}
		tv := unix.Timeval{Sec: 5}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifc.Index})
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	v4, v6, err := ScenarioFrames(genMAC, sinkMAC)
	if err != nil {
		t.Fatal(err)
	}
	big, err := UDPFrame{SrcMAC: genMAC, DstMAC: sinkMAC, Src: InsideV6, Dst: OutsideV6,
		SrcPort: 1, DstPort: 2, Size: 301}.Build()
	if err != nil {
		t.Fatal(err)
	}
	templates := [][]byte{v4, big, v6}
	g := newGen(t, gns, templates...)
	const k = 300
	if err := g.Send(k); err != nil {
		t.Fatal(err)
	}
	seen := make([]int, len(templates))
	buf := make([]byte, 2048)
	for i := 0; i < k; i++ {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("after %d frames: %v", i, err)
		}
		match := -1
		for j, tp := range templates {
			if string(buf[:n]) == string(tp) {
				match = j
			}
		}
		if match < 0 {
			t.Fatalf("frame %d (%d octets) is none of the templates: % x", i, n, buf[:n])
		}
		seen[match]++
	}
	for j, n := range seen {
		if n < k/len(templates)-4 || n > k/len(templates)+4 {
			t.Errorf("template %d seen %d times of %d", j, n, k)
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// TestSinkPassesProbes checks that the sink counts every frame and hands
// exactly the IPv4 frames with TOS ProbeTOS to the kernel (a packet socket
// on its interface receives them and nothing else).
func TestSinkPassesProbes(t *testing.T) {
	gns, sns := pair(t)
	sink, err := NewSink(sns, "s0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	var fd int
	if err := netlab.Do(sns, func() error {
		ifc, err := net.InterfaceByName("s0")
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20); err != nil {
			return err
		}
		tv := unix.Timeval{Sec: 1}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifc.Index})
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	v4, v6, err := ScenarioFrames(genMAC, sinkMAC)
	if err != nil {
		t.Fatal(err)
	}
	probe := append([]byte(nil), v4...)
	probe[15] = ProbeTOS // the sink does not check the header checksum
	// An IPv6 frame with the probe's octet at the same offset is not one.
	v6tc := append([]byte(nil), v6...)
	v6tc[15] = ProbeTOS
	g := newGen(t, gns, v4, probe, v6, v6tc)
	const k = 400
	if err := g.Send(k); err != nil {
		t.Fatal(err)
	}
	if c := waitCount(t, sink, k); c.Total() != k || c.IPv4 != k/2 || c.IPv6 != k/2 {
		t.Fatalf("sink counted %v, want %d frames, half IPv4", c, k)
	}
	buf := make([]byte, 2048)
	for i := 0; i < k/4; i++ {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			t.Fatalf("after %d probes: %v", i, err)
		}
		if string(buf[:n]) != string(probe) {
			t.Fatalf("frame %d passed to the kernel is not a probe: % x", i, buf[:n])
		}
	}
	if n, _, err := unix.Recvfrom(fd, buf, 0); err == nil {
		t.Errorf("a frame beyond the probes was passed: % x", buf[:n])
	}
}
