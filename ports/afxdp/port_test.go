package afxdp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/psavd/psavd/ports"
)

// receiveUntil receives from port until cond holds or the deadline passes,
// calling fn with a copy of each frame (and its offset), releasing every
// batch.
func receiveUntil(t testing.TB, port *Port, b *ports.Batch, d time.Duration, cond func() bool, fn func(frame []byte, off int)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() && time.Now().Before(deadline) {
		n, err := port.Receive(b, 20*time.Millisecond)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		for i := range b.Pkts[:n] {
			pk := &b.Pkts[i]
			fn(append([]byte(nil), pk.Frame()...), pk.Off)
		}
		port.Release(b)
	}
}

// completionChecker verifies, through the test hook, that the kernel
// completes a port's TX frames in the order they were put on the TX ring
// (the FIFO assumption of Transmit).
type completionChecker struct {
	port      *Port
	ring      *umemRingMirror
	completed atomic.Uint64
	bad       atomic.Uint64
	first     atomic.Value // string: first mismatch
}

func checkCompletions(t *testing.T, port *Port) *completionChecker {
	ring, err := completionRing(port.sock)
	if err != nil {
		t.Fatal(err)
	}
	c := &completionChecker{port: port, ring: ring}
	testHookComplete = func(p *Port, done uint64, n int) {
		if p != c.port {
			return
		}
		cons := *c.ring.Consumer
		mask := uint32(len(c.ring.Descs) - 1)
		for i := 0; i < n; i++ {
			got := c.ring.Descs[(cons+uint32(i))&mask]
			seq := done + uint64(i)
			want := (uint64(p.rxFrames) + seq%uint64(p.txFrames)) * p.frameSize
			if got != want {
				if c.bad.Add(1) == 1 {
					c.first.Store(fmt.Sprintf("completion of tx #%d: addr %#x, want %#x", seq, got, want))
				}
			}
		}
		c.completed.Add(uint64(n))
	}
	t.Cleanup(func() { testHookComplete = nil })
	return c
}

func (c *completionChecker) verify(t *testing.T, min uint64) {
	t.Helper()
	if n := c.bad.Load(); n != 0 {
		t.Errorf("%d completions out of FIFO order; first: %v", n, c.first.Load())
	}
	if got := c.completed.Load(); got < min {
		t.Errorf("%d completions checked, want at least %d", got, min)
	}
}

// TestTraffic sends frames from namespace A through a veth to a port on
// B's end (RX), then from the port to A (TX), in native and generic mode,
// and checks that a routed port leaves ARP, NDP and the node's own traffic
// to the kernel.
func TestTraffic(t *testing.T) {
	requireAFXDP(t)
	for _, mode := range []Mode{ModeNative, ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) { testTraffic(t, mode) })
	}
}

func testTraffic(t *testing.T, mode Mode) {
	p := newPair(t, true)
	// Small pools so that RX and TX frames are reused many times.
	iface, port := openIn(t, p.nsB, p.ifB, Options{Mode: mode, Frames: 256, RingSize: 128})
	if iface.Mode() != mode.String() {
		t.Fatalf("attached %s, want %s", iface.Mode(), mode)
	}
	t.Logf("mode %s, zero-copy %v, tx budget %d", iface.Mode(), port.ZeroCopy(), port.TxBudget())
	raw := openRaw(t, p.nsA, p.ifA)
	b := ports.NewBatch(64)

	// --- RX: N distinct frames from A arrive byte for byte through the socket.
	const N = 300
	sentFrames := make([][]byte, 0, N)
	var got, extra [][]byte
	offs := map[int]int{}
	for len(sentFrames) < N {
		for k := 0; k < 32 && len(sentFrames) < N; k++ {
			f := testFrame(t, macA, macB, len(sentFrames))
			sentFrames = append(sentFrames, f)
			raw.send(t, f)
		}
		want := len(sentFrames)
		receiveUntil(t, port, b, 3*time.Second, func() bool { return len(got) >= want }, func(f []byte, off int) {
			offs[off]++
			if off < ports.Headroom {
				t.Errorf("RX data offset %d < ports.Headroom %d", off, ports.Headroom)
			}
			if isTestFrame(f) {
				got = append(got, f)
			} else {
				extra = append(extra, f)
			}
		})
	}
	if len(got) != N {
		t.Fatalf("received %d of %d frames", len(got), N)
	}
	for i := range got {
		if !bytes.Equal(got[i], sentFrames[i]) {
			t.Fatalf("frame %d differs:\n got %x\nwant %x", i, got[i], sentFrames[i])
		}
	}
	t.Logf("RX data offsets within the UMEM frame: %v", offs)
	if offs[xdpPacketHeadroom] != N {
		t.Errorf("RX offsets %v: expected all at XDP_PACKET_HEADROOM %d", offs, xdpPacketHeadroom)
	}

	// --- Control traffic on a routed port goes to the kernel: ARP for B,
	// ICMP echo to B (which makes B's kernel ARP for A), ICMPv6 echo to B
	// (which makes B's kernel solicit A: the NA comes back to B), ARP for an
	// address that is not B's. B's kernel answers; the socket sees none.
	raw.send(t, arpReq(t, ipB))
	raw.send(t, arpReq(t, ipOther))
	echo := serialize(t, eth(layers.EthernetTypeIPv4, macB),
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: ipA.AsSlice(), DstIP: ipB.AsSlice()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1},
		gopacket.Payload("ping"))
	raw.send(t, echo)
	raw.send(t, icmp6(t, ip6B, layers.ICMPv6TypeEchoRequest, gopacket.Payload([]byte{0, 7, 0, 1, 'p', 'i', 'n', 'g'})))
	var arpReply, echoReply, echo6Reply bool
	buf := make([]byte, 4096)
	deadline := time.Now().Add(3 * time.Second)
	for !(arpReply && echoReply && echo6Reply) && time.Now().Before(deadline) {
		f := raw.recv(buf)
		if f == nil {
			// Meanwhile, anything reaching the socket is wrong.
			receiveUntil(t, port, b, 0, func() bool { return false }, func(f []byte, _ int) { extra = append(extra, f) })
			continue
		}
		pk := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if a, ok := pk.Layer(layers.LayerTypeARP).(*layers.ARP); ok && a.Operation == layers.ARPReply &&
			bytes.Equal(a.SourceProtAddress, ipB.AsSlice()) {
			arpReply = true
		}
		if ic, ok := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok && ic.TypeCode.Type() == layers.ICMPv4TypeEchoReply {
			echoReply = true
		}
		if ic, ok := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok && ic.TypeCode.Type() == layers.ICMPv6TypeEchoReply {
			echo6Reply = true
		}
	}
	if !arpReply || !echoReply || !echo6Reply {
		t.Errorf("kernel replies seen: ARP %v, ICMP echo %v, ICMPv6 echo %v; want all", arpReply, echoReply, echo6Reply)
	}
	receiveUntil(t, port, b, 100*time.Millisecond, func() bool { return false }, func(f []byte, _ int) { extra = append(extra, f) })
	for _, f := range extra {
		t.Errorf("routed port's socket received a non-data frame: %v",
			gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default))
	}

	// --- TX: M frames from the port reach A byte for byte and in order;
	// the 128 TX frames are reused ~8 times, and every completion is
	// checked against the FIFO order Transmit relies on.
	cc := checkCompletions(t, port)
	const M = 1000
	var txd [][]byte
	pkts := make([]ports.Packet, 0, 32)
	recvd := 0
	for len(txd) < M {
		pkts = pkts[:0]
		for k := 0; k < 32 && len(txd) < M; k++ {
			f := testFrame(t, macB, macA, len(txd))
			txd = append(txd, f)
			// Alternate frames at offset 0 and inside a larger buffer.
			pk := ports.Packet{Buf: f, Len: len(f)}
			if len(txd)%2 == 0 {
				big := make([]byte, 100+len(f)+50)
				copy(big[100:], f)
				pk = ports.Packet{Buf: big, Off: 100, Len: len(f)}
			}
			pkts = append(pkts, pk)
		}
		tdl := time.Now().Add(3 * time.Second)
		for off := 0; off < len(pkts); {
			n, err := port.Transmit(pkts[off:])
			if err != nil {
				t.Fatalf("transmit: %v", err)
			}
			off += n
			if n == 0 {
				if time.Now().After(tdl) {
					t.Fatalf("transmit stalled at frame %d", len(txd)-len(pkts)+off)
				}
				time.Sleep(time.Millisecond)
			}
		}
		rdl := time.Now().Add(3 * time.Second)
		for recvd < len(txd) && time.Now().Before(rdl) {
			f := raw.recv(buf)
			if f == nil || !isTestFrame(f) {
				continue
			}
			if !bytes.Equal(f, txd[recvd]) {
				t.Fatalf("A received frame %d differing:\n got %x\nwant %x", recvd, f, txd[recvd])
			}
			recvd++
		}
		if recvd < len(txd) {
			t.Fatalf("A received %d of %d transmitted frames", recvd, len(txd))
		}
	}
	// Collect the last completions.
	time.Sleep(20 * time.Millisecond)
	if _, err := port.Transmit([]ports.Packet{{Buf: txd[0], Len: len(txd[0])}}); err != nil {
		t.Fatal(err)
	}
	cc.verify(t, M-32)

	st, err := port.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats %+v", st)
	if st.RxPackets < N || st.TxPackets != M+1 || st.RxHeld != 0 || st.RxBadDescs != 0 || st.TxBadFrames != 0 {
		t.Errorf("stats %+v", st)
	}
	if st.RxDropped != 0 || st.RxRingFull != 0 || st.RxInvalidDescs != 0 || st.TxInvalidDescs != 0 {
		t.Errorf("kernel counted losses: %+v", st)
	}
}

// TestCrossConnectNonIP checks that a cross-connect port takes ARP that is
// not for the node, and leaves ARP for the node to the kernel.
func TestCrossConnectNonIP(t *testing.T) {
	requireAFXDP(t)
	p := newPair(t, true)
	_, port := openIn(t, p.nsB, p.ifB, Options{CrossConnect: true, Frames: 64, RingSize: 32})
	raw := openRaw(t, p.nsA, p.ifA)
	b := ports.NewBatch(16)

	other := arpReq(t, ipOther)
	lldp := rawEth(0x88CC, 46)
	raw.send(t, other)
	raw.send(t, lldp)
	raw.send(t, arpReq(t, ipB))
	var gotOther, gotLLDP bool
	receiveUntil(t, port, b, 2*time.Second, func() bool { return gotOther && gotLLDP }, func(f []byte, _ int) {
		switch {
		case bytes.Equal(f, other):
			gotOther = true
		case bytes.Equal(f, lldp):
			gotLLDP = true
		case binary.BigEndian.Uint16(f[12:]) == 0x0806 && bytes.Equal(f[38:42], ipB.AsSlice()):
			t.Error("ARP for the node's own address reached the socket")
		}
	})
	if !gotOther || !gotLLDP {
		t.Errorf("socket got ARP for another host %v, LLDP %v; want both", gotOther, gotLLDP)
	}
	buf := make([]byte, 2048)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		f := raw.recv(buf)
		if f == nil {
			continue
		}
		pk := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		if a, ok := pk.Layer(layers.LayerTypeARP).(*layers.ARP); ok && a.Operation == layers.ARPReply &&
			bytes.Equal(a.SourceProtAddress, ipB.AsSlice()) {
			return
		}
	}
	t.Error("no ARP reply from B's kernel")
}

// TestReceiveWokenByClose checks that Close wakes a Receive waiting
// without a timeout, and that a closed port reports ErrClosed.
func TestReceiveWokenByClose(t *testing.T) {
	requireAFXDP(t)
	p := newPair(t, false)
	_, port := openIn(t, p.nsB, p.ifB, Options{Frames: 64, RingSize: 32})
	done := make(chan error, 1)
	go func() {
		b := ports.NewBatch(8)
		for {
			if _, err := port.Receive(b, -1); err != nil {
				done <- err
				return
			}
			port.Release(b)
		}
	}()
	time.Sleep(50 * time.Millisecond)
	if err := port.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Receive after Close: %v, want ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Receive not woken by Close")
	}
	if _, err := port.Transmit([]ports.Packet{{Buf: make([]byte, 60), Len: 60}}); !errors.Is(err, ErrClosed) {
		t.Errorf("Transmit after Close: %v", err)
	}
	if _, err := port.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close: %v", err)
	}
	if err := port.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// twoPorts opens ports on both ends of a veth pair: frames transmitted on
// one are received by the other.
func twoPorts(t testing.TB, opts Options) (pa, pb *Port) {
	p := newPair(t, false)
	_, pa = openIn(t, p.nsA, p.ifA, opts)
	_, pb = openIn(t, p.nsB, p.ifB, opts)
	return pa, pb
}

// TestConcurrentRxTx runs, on each of two connected ports, a receiving
// loop and two transmitting loops at once (as in routed mode, where several
// poll loops transmit on one port), under the race detector, and checks
// that every frame arrives intact exactly once.
func TestConcurrentRxTx(t *testing.T) {
	requireAFXDP(t)
	for _, mode := range []Mode{ModeNative, ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) { testConcurrentRxTx(t, mode) })
	}
}

func testConcurrentRxTx(t *testing.T, mode Mode) {
	pa, pb := twoPorts(t, Options{Mode: mode, Frames: 512, RingSize: 256})
	const perSender = 2000
	const window = 64 // frames in flight per sender, below the RX pool
	type key struct{ sender, seq int }

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	// delivered[port][sender] counts frames seen by the receiver of port.
	var delivered [2][4]atomic.Int64
	receiver := func(idx int, port *Port, stop *atomic.Bool) {
		defer wg.Done()
		b := ports.NewBatch(64)
		seen := map[key]bool{}
		for !stop.Load() {
			n, err := port.Receive(b, 5*time.Millisecond)
			if err != nil {
				errs <- err
				return
			}
			for i := range b.Pkts[:n] {
				f := b.Pkts[i].Frame()
				if !isTestFrame(f) {
					continue
				}
				seq := int(binary.BigEndian.Uint16(f[58:]))
				sender := int(f[11]) // low byte of the source MAC
				want := testFrame(t, net.HardwareAddr{2, 0, 0, 0, 0, byte(sender)}, f[0:6], seq)
				if !bytes.Equal(f, want) {
					errs <- fmt.Errorf("port %d: corrupt frame seq %d from %d", idx, seq, sender)
					return
				}
				k := key{sender, seq}
				if seen[k] {
					errs <- fmt.Errorf("port %d: duplicate frame %v", idx, k)
					return
				}
				seen[k] = true
				delivered[idx][sender].Add(1)
			}
			port.Release(b)
		}
	}
	sender := func(from *Port, toIdx, id int) {
		defer wg.Done()
		src := net.HardwareAddr{2, 0, 0, 0, 0, byte(id)}
		dst := macB
		if toIdx == 0 {
			dst = macA
		}
		pkts := make([]ports.Packet, 0, 16)
		deadline := time.Now().Add(20 * time.Second)
		for seq := 0; seq < perSender; {
			if int64(seq)-delivered[toIdx][id].Load() >= window {
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("sender %d: stalled at %d, %d delivered", id, seq, delivered[toIdx][id].Load())
					return
				}
				time.Sleep(100 * time.Microsecond)
				continue
			}
			pkts = pkts[:0]
			for k := 0; k < 16 && seq+k < perSender; k++ {
				f := testFrame(t, src, dst, seq+k)
				pkts = append(pkts, ports.Packet{Buf: f, Len: len(f)})
			}
			for off := 0; off < len(pkts); {
				n, err := from.Transmit(pkts[off:])
				if err != nil {
					errs <- err
					return
				}
				off += n
				if n == 0 {
					time.Sleep(100 * time.Microsecond)
				}
			}
			seq += len(pkts)
		}
	}
	var stopA, stopB atomic.Bool
	wg.Add(2)
	go receiver(0, pa, &stopA)
	go receiver(1, pb, &stopB)
	var sw sync.WaitGroup
	for id, s := range []struct {
		from  *Port
		toIdx int
	}{{pa, 1}, {pa, 1}, {pb, 0}, {pb, 0}} {
		sw.Add(1)
		wg.Add(1)
		go func() { defer sw.Done(); sender(s.from, s.toIdx, id) }()
	}
	sw.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if delivered[1][0].Load()+delivered[1][1].Load()+delivered[0][2].Load()+delivered[0][3].Load() == 4*perSender {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopA.Store(true)
	stopB.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, c := range []struct{ port, sender int }{{1, 0}, {1, 1}, {0, 2}, {0, 3}} {
		if n := delivered[c.port][c.sender].Load(); n != perSender {
			t.Errorf("sender %d: %d of %d frames delivered", c.sender, n, perSender)
		}
	}
}

// TestNoAllocs checks that the steady state of Transmit, Receive and
// Release does not allocate.
func TestNoAllocs(t *testing.T) {
	requireAFXDP(t)
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	pa, pb := twoPorts(t, Options{Mode: ModeGeneric, Frames: 256, RingSize: 128})
	pkts := make([]ports.Packet, 32)
	for i := range pkts {
		f := testFrame(t, macA, macB, i)
		pkts[i] = ports.Packet{Buf: f, Len: len(f)}
	}
	b := ports.NewBatch(64)
	round := func() {
		if n, err := pa.Transmit(pkts); err != nil || n != len(pkts) {
			t.Fatalf("transmit: %d, %v", n, err)
		}
		for got := 0; got < len(pkts); {
			n, err := pb.Receive(b, 100*time.Millisecond)
			if err != nil || n == 0 {
				t.Fatalf("receive: %d, %v", n, err)
			}
			got += n
			pb.Release(b)
		}
		// The poll path with nothing to receive.
		if n, err := pb.Receive(b, time.Millisecond); err != nil || n != 0 {
			t.Fatalf("idle receive: %d, %v", n, err)
		}
	}
	for i := 0; i < 20; i++ { // warm up: pools, rings, the scheduler
		round()
	}
	if avg := testing.AllocsPerRun(200, round); avg != 0 {
		t.Errorf("%.2f allocations per round of 32 frames, want 0", avg)
	}
}

// BenchmarkForward transmits batches of 32 frames on one port and receives
// them on the port at the other end of a veth pair.
func BenchmarkForward(b *testing.B) {
	requireAFXDP(b)
	for _, mode := range []Mode{ModeNative, ModeGeneric} {
		b.Run(mode.String(), func(b *testing.B) {
			pa, pb := twoPorts(b, Options{Mode: mode})
			pkts := make([]ports.Packet, 32)
			for i := range pkts {
				f := testFrame(b, macA, macB, i)
				pkts[i] = ports.Packet{Buf: f, Len: len(f)}
			}
			batch := ports.NewBatch(64)
			b.ReportAllocs()
			b.ResetTimer()
			frames := 0
			for i := 0; i < b.N; i++ {
				n, err := pa.Transmit(pkts)
				if err != nil {
					b.Fatal(err)
				}
				for got := 0; got < n; {
					m, err := pb.Receive(batch, 100*time.Millisecond)
					if err != nil {
						b.Fatal(err)
					}
					if m == 0 {
						break // lost: counted by the rate below
					}
					got += m
					frames += m
					pb.Release(batch)
				}
			}
			b.ReportMetric(float64(frames)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
