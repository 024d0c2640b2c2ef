package push

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/testtool"

	"github.com/psavd/psavd/internal/netlab"
)

// pushLab is a Linux bridge in its own namespace ("sw") with one namespace
// per node, each attached by a veth (eth0 in the node, p<i> on the
// bridge). Node i has 10.99.0.(10+i)/24 and fd99::(10+i)/64. With
// noMulticast the bridge ports do not flood multicast: the underlay
// carries no IP multicast.
type pushLab struct {
	t           testing.TB
	topo        *netlab.Topology
	sw          string
	noMulticast bool
	nodes       map[int]*labNode
}

type labNode struct {
	ns     string
	n      *Node
	socks  *Sockets
	cancel context.CancelFunc
	done   chan error
}

func labRLOC(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 99, 0, byte(10 + i)}) }

func labRLOC6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0: 0xfd, 1: 0x99, 15: byte(10 + i)})
}

func newPushLab(t testing.TB, noMulticast bool) *pushLab {
	t.Helper()
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	l := &pushLab{t: t, topo: netlab.New(), nodes: map[int]*labNode{}}
	t.Cleanup(func() {
		for _, n := range l.nodes {
			n.stop()
		}
		if err := l.topo.Close(); err != nil {
			t.Error(err)
		}
	})
	sw, err := l.topo.NS("sw")
	if err != nil {
		t.Fatal(err)
	}
	l.sw = sw
	if err := netlab.IP("-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		t.Fatal(err)
	}
	if err := netlab.IP("-n", sw, "link", "set", "br0", "up"); err != nil {
		t.Fatal(err)
	}
	l.noMulticast = noMulticast
	return l
}

// ns creates node i's namespace and link.
func (l *pushLab) ns(i int) string {
	l.t.Helper()
	ns, err := l.topo.NS(fmt.Sprintf("n%d", i))
	if err != nil {
		l.t.Fatal(err)
	}
	port := fmt.Sprintf("p%d", i)
	steps := [][]string{
		{"-n", l.sw, "link", "set", port, "master", "br0"},
		{"-n", ns, "addr", "add", labRLOC(i).String() + "/24", "dev", "eth0"},
		{"-n", ns, "addr", "add", labRLOC6(i).String() + "/64", "dev", "eth0", "nodad"},
	}
	if l.noMulticast {
		steps = append(steps, []string{"-n", l.sw, "link", "set", "dev", port, "type", "bridge_slave", "mcast_flood", "off"})
	}
	if err := l.topo.Veth(ns, "eth0", "", l.sw, port, ""); err != nil {
		l.t.Fatal(err)
	}
	for _, s := range steps {
		if err := netlab.IP(s...); err != nil {
			l.t.Fatal(err)
		}
	}
	return ns
}

// start runs a node with cfg in namespace i (created if needed): its
// sockets are opened inside the namespace, the node runs in goroutines.
func (l *pushLab) start(i int, cfg Config) *labNode {
	l.t.Helper()
	ns := l.nsName(i)
	if !slices.Contains(l.topo.Names(), ns) {
		ns = l.ns(i)
	}
	var socks *Sockets
	if err := netlab.Do(ns, func() (err error) { socks, err = Listen(cfg); return err }); err != nil {
		l.t.Fatal(err)
	}
	n, err := New(cfg)
	if err != nil {
		l.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ln := &labNode{ns: ns, n: n, socks: socks, cancel: cancel, done: make(chan error, 1)}
	go func() { ln.done <- n.Run(ctx, socks) }()
	l.nodes[i] = ln
	return ln
}

func (n *labNode) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.socks.Close()
	n.cancel = nil
}

// labConfig: node i of group g; short timers for the tests.
func labConfig(i int, g netip.Addr, tr Transport) Config {
	c := pushTestConfig(i, nil)
	c.Group, c.Transport, c.Interface = g, tr, "eth0"
	c.RLOC = labRLOC(i)
	if g.Is6() {
		c.RLOC = labRLOC6(i)
	}
	c.RefreshInterval, c.RegistrationTTL, c.LookupInterval = time.Second, 3*time.Second, time.Second
	c.TickInterval = 20 * time.Millisecond
	return c
}

// waitConverged polls (no timing assertion: a generous deadline) until the
// nodes have one digest and cond holds; it returns the time it took.
func waitConverged(t testing.TB, ns []*Node, deadline time.Duration, what string, cond func(now time.Time) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		now := time.Now()
		d, ok := simDigests(now, ns)
		if ok && (cond == nil || cond(now)) {
			return now.Sub(start)
		}
		if now.Sub(start) > deadline {
			t.Fatalf("%s: not converged after %v: digests %v", what, deadline, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (l *pushLab) pushNodes(ids ...int) []*Node {
	var out []*Node
	for _, i := range ids {
		out = append(out, l.nodes[i].n)
	}
	return out
}

// multicastCarried sends datagrams from node a to group g (on other ports
// than the nodes') and reports whether node b, joined to g, receives one.
func (l *pushLab) multicastCarried(a, b int, g netip.Addr) bool {
	l.t.Helper()
	cfg := labConfig(b, g, TransportMulticast)
	cfg.ControlPort, cfg.DataPort = 14342, 14341
	var rx *Sockets
	if err := netlab.Do(l.nodes[b].ns, func() (err error) { rx, err = Listen(cfg); return err }); err != nil {
		l.t.Fatal(err)
	}
	defer rx.Close()
	cfg = labConfig(a, g, TransportMulticast)
	cfg.ControlPort, cfg.DataPort = 14342, 14341
	var tx *Sockets
	if err := netlab.Do(l.nodes[a].ns, func() (err error) { tx, err = Listen(cfg); return err }); err != nil {
		l.t.Fatal(err)
	}
	defer tx.Close()
	// Three probes, 300 ms each: a loaded machine cannot fake "not carried"
	// for the multicast case, and the unicast case only needs silence.
	buf := make([]byte, 64)
	for range 3 {
		if _, err := tx.Control.WriteToUDPAddrPort([]byte("probe"), netip.AddrPortFrom(g, 14342)); err != nil {
			l.t.Fatal(err)
		}
		_ = rx.Control.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		k, _, err := rx.Control.ReadFromUDPAddrPort(buf)
		if err == nil && string(buf[:k]) == "probe" {
			return true
		}
	}
	return false
}

// TestPushNetns: eight nodes on a bridge converge on identical
// registration sets (by digest), after start and after a change; an
// external xTR gets the whole membership from one member; a node that
// leaves drops out of the RLE when its registration times out. Once with
// real IP multicast, once with unicast replication on an underlay that
// carries no multicast. IPv4 and an IPv6 group.
func TestPushNetns(t *testing.T) {
	cases := []struct {
		name    string
		tr      Transport
		group   netip.Addr
		noMcast bool // the bridge floods no multicast
	}{
		{"multicast", TransportMulticast, netip.MustParseAddr("239.1.1.1"), false},
		{"unicast", TransportUnicast, netip.MustParseAddr("239.1.1.1"), true},
		{"multicast-ipv6", TransportMulticast, netip.MustParseAddr("ff15::1:1"), false},
		// IPv6 needs multicast for neighbour discovery, so this underlay
		// carries it; the nodes neither join G nor send to it.
		{"unicast-ipv6", TransportUnicast, netip.MustParseAddr("ff15::1:1"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const n = 8
			lab := newPushLab(t, tc.noMcast)
			ids := make([]int, n)
			for i := range n {
				ids[i] = i
				lab.ns(i)
			}
			start := time.Now()
			for i := range n {
				c := labConfig(i, tc.group, tc.tr)
				if tc.tr == TransportUnicast {
					c.Members = []netip.Addr{labConfig(0, tc.group, tc.tr).RLOC} // one seed; the rest is learned
				}
				lab.start(i, c)
			}
			ns := lab.pushNodes(ids...)
			var all []netip.Addr
			for _, x := range ns {
				all = append(all, x.cfg.RLOC)
			}
			slices.SortFunc(all, netip.Addr.Compare)
			full := func(now time.Time) bool {
				for _, x := range ns {
					if !slices.Equal(x.Members(tc.group, now), all) || len(x.MapServer().Registrations(now)) != n {
						return false
					}
				}
				return true
			}
			waitConverged(t, ns, 20*time.Second, "start", full)
			t.Logf("%s: %d nodes converged %v after the first was started", tc.name, n, time.Since(start))
			// The underlay is what the case says it is.
			if carried := lab.multicastCarried(1, 2, tc.group); carried != !tc.noMcast {
				t.Fatalf("multicast carried by the underlay: %v", carried)
			}

			d0 := ns[0].Digest(time.Now())
			if err := ns[3].SetEIDs([]EID{pushEIDFor(3), {Site: "as65001", Prefix: netip.MustParsePrefix("10.200.0.0/16")}}); err != nil {
				t.Fatal(err)
			}
			el := waitConverged(t, ns, 20*time.Second, "change", func(now time.Time) bool {
				return ns[0].Digest(now) != d0 && len(ns[0].MapServer().Registrations(now)) == n+1
			})
			t.Logf("%s: converged %v after a change (TickInterval 20 ms)", tc.name, el)
			for i, x := range ns {
				if _, ok := x.MapServer().Lookup(0, netip.MustParseAddr("10.200.1.1"), time.Now()); !ok {
					t.Fatalf("node %d lacks the new prefix", i)
				}
				if st := x.Stats(); st.Mismatches != 0 || st.DecapDropped != 0 {
					t.Fatalf("node %d: %+v", i, st)
				}
				if tc.tr == TransportUnicast && x.Stats().Decapsulated == 0 {
					t.Fatalf("node %d received nothing encapsulated", i)
				}
			}

			// An external xTR in its own namespace on the bridge asks member 5.
			xns := lab.ns(50)
			var conn *net.UDPConn
			itr := labRLOC(50)
			if tc.group.Is6() {
				itr = labRLOC6(50)
			}
			if err := netlab.Do(xns, func() (err error) {
				conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: itr.AsSlice()})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rle, err := LookupGroup(ctx, conn, netip.AddrPortFrom(ns[5].cfg.RLOC, 4342), itr, tc.group)
			if err != nil || !slices.Equal(rle, all) {
				t.Fatalf("external look-up: %v %v, want %v", rle, err, all)
			}

			// Node 7 leaves without a word: out of every RLE after the TTL.
			gone := ns[7].cfg.RLOC
			lab.nodes[7].stop()
			live := ns[:7]
			left := time.Now()
			el = waitConverged(t, live, 30*time.Second, "leave", func(now time.Time) bool {
				for _, x := range live {
					if slices.Contains(x.Members(tc.group, now), gone) || len(x.MapServer().Registrations(now)) != n {
						return false
					}
				}
				return true
			})
			t.Logf("%s: leaver gone from every RLE %v after it stopped (registration TTL 3 s)", tc.name, el)
			if time.Since(left) < time.Second {
				t.Fatal("leaver dropped before its registration could time out")
			}
			rle, err = LookupGroup(ctx, conn, netip.AddrPortFrom(ns[1].cfg.RLOC, 4342), itr, tc.group)
			if err != nil || slices.Contains(rle, gone) || len(rle) != n-1 {
				t.Fatalf("external look-up after leave: %v %v", rle, err)
			}
		})
	}
}

// TestPushNetnsSeedGroup: core seed-group A, B, C (configured with each
// other's RLOCs); layer nodes I, J, K know their group and one core RLOC
// only; unicast replication, no multicast on the underlay. They register
// their group in the core, find each other and converge; then a new node
// L, knowing only the core, joins and converges with them.
func TestPushNetnsSeedGroup(t *testing.T) {
	lab := newPushLab(t, true)
	core, layer := netip.MustParseAddr("239.0.0.1"), netip.MustParseAddr("239.2.2.2")
	for i := range 3 {
		c := labConfig(i, core, TransportUnicast)
		c.Members = []netip.Addr{labRLOC(0), labRLOC(1), labRLOC(2)}
		lab.start(i, c)
	}
	layerCfg := func(i int) Config {
		c := labConfig(i, layer, TransportUnicast)
		c.Core = &SeedGroup{Group: core, Members: []netip.Addr{labRLOC(0)}}
		return c
	}
	for _, i := range []int{10, 11, 12} {
		lab.start(i, layerCfg(i))
	}
	groupOK := func(ids ...int) func(time.Time) bool {
		ns := lab.pushNodes(ids...)
		var want []netip.Addr
		for _, i := range ids {
			want = append(want, labRLOC(i))
		}
		return func(now time.Time) bool {
			for _, x := range ns {
				if !slices.Equal(x.Members(x.cfg.Group, now), want) || len(x.MapServer().Registrations(now)) != len(ids) {
					return false
				}
			}
			return true
		}
	}
	el := waitConverged(t, lab.pushNodes(10, 11, 12), 20*time.Second, "layer", groupOK(10, 11, 12))
	t.Logf("layer group converged %v after start, through the core", el)
	waitConverged(t, lab.pushNodes(0, 1, 2), 20*time.Second, "core", func(now time.Time) bool {
		return groupOK(0, 1, 2)(now) && slices.Equal(lab.nodes[2].n.Members(layer, now), []netip.Addr{labRLOC(10), labRLOC(11), labRLOC(12)})
	})
	start := time.Now()
	lab.start(13, layerCfg(13))
	waitConverged(t, lab.pushNodes(10, 11, 12, 13), 20*time.Second, "new node", groupOK(10, 11, 12, 13))
	t.Logf("new layer node knowing only core node A converged with its group %v after start", time.Since(start))
	if got := lab.nodes[1].n.Members(layer, time.Now()); len(got) != 4 {
		t.Fatalf("core's RLE of the layer group: %v", got)
	}
	for _, i := range []int{10, 11, 12, 13} {
		if st := lab.nodes[i].n.Stats(); st.MapRepliesUsed == 0 || st.Mismatches != 0 {
			t.Fatalf("node %d: %+v", i, st)
		}
	}
}

// TestPushNetnsTshark captures a unicast-replication group live on a
// node's veth (tcpdump) and has tshark (a decoder that is not ours) read it: the
// encapsulated Map-Registers decode as LISP data (I bit, instance-ID
// 0xffffff) carrying IP/UDP to G:4342 and a LISP Map-Register whose
// Multicast Info LCAF is (0/0, G) with the sender in the RLE, or an EID
// record; the external look-up's Map-Reply lists every member in its RLE.
// Checksums are verified (transmit offload is turned off on the veths so
// the capture holds real outer checksums).
func TestPushNetnsTshark(t *testing.T) {
	for _, tool := range []string{"tshark", "ethtool", "tcpdump"} {
		testtool.Path(t, tool, tool)
	}
	lab := newPushLab(t, true)
	g := netip.MustParseAddr("239.1.1.1")
	ids := []int{0, 1, 2, 50}
	for _, i := range ids {
		ns := lab.ns(i)
		if _, err := netlab.Exec(ns, "ethtool", "-K", "eth0", "tx", "off"); err != nil {
			t.Fatal(err)
		}
		if _, err := netlab.Run("ip", "netns", "exec", lab.sw, "ethtool", "-K", fmt.Sprintf("p%d", i), "tx", "off"); err != nil {
			t.Fatal(err)
		}
	}
	pcap := filepath.Join(t.TempDir(), "push.pcap")
	if d := os.Getenv("PUSH_PCAP_DIR"); d != "" {
		pcap = filepath.Join(d, "push.pcap")
	}
	// tcpdump in immediate mode with -U takes and writes every packet as it
	// comes (otherwise packets wait in the kernel's ring buffer and are lost
	// at SIGINT), so the file is complete when it stops; tshark decodes it.
	capture := exec.Command("ip", "netns", "exec", lab.nsName(1), "tcpdump", "-n", "-U", "--immediate-mode", "-i", "eth0", "-w", pcap,
		"udp port 4341 or udp port 4342")
	stderr, err := capture.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := capture.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = capture.Process.Signal(syscall.SIGINT)
			_ = capture.Wait()
		}
	}
	defer stop()
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				ready <- true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("tcpdump did not start capturing")
	}
	for i := range 3 {
		c := labConfig(i, g, TransportUnicast)
		c.Members = []netip.Addr{labRLOC(0)}
		lab.start(i, c)
	}
	ns := lab.pushNodes(0, 1, 2)
	waitConverged(t, ns, 20*time.Second, "start", func(now time.Time) bool {
		return len(ns[1].Members(g, now)) == 3 && len(ns[1].MapServer().Registrations(now)) == 3
	})
	var conn *net.UDPConn
	if err := netlab.Do(lab.nsName(50), func() (err error) {
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: labRLOC(50).AsSlice()})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := LookupGroup(ctx, conn, netip.AddrPortFrom(labRLOC(1), 4342), labRLOC(50), g); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	stop()

	fields := []string{"frame.protocols", "_ws.malformed", "_ws.expert.severity", "_ws.expert.message",
		"lisp-data.flags.iid", "lisp-data.iid", "ip.src", "ip.dst", "udp.dstport", "ip.checksum.status", "udp.checksum.status",
		"lisp.type", "lisp.lcaf.mcinfo.grp.ipv4", "lisp.lcaf.mcinfo.src.ipv4", "lisp.lcaf.rle_entry.ipv4",
		"lisp.mapping.eid.ipv4", "lisp.loc.locator", "lisp.mreg.flags.xtrid"}
	args := []string{"-r", pcap, "-n", "-d", "udp.port==4342,lisp", "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command("tshark", args...).Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	var membership, eid, reply int
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		v := map[string]string{}
		for i, x := range strings.Split(l, "|") {
			v[fields[i]] = x
		}
		if v["_ws.malformed"] != "" || v["_ws.expert.severity"] != "" {
			t.Errorf("tshark flags a frame: %s", l)
		}
		if strings.Contains(v["ip.checksum.status"], "0") || strings.Contains(v["udp.checksum.status"], "0") {
			t.Errorf("bad checksum: %s", l)
		}
		switch {
		case strings.Contains(v["frame.protocols"], "lisp-data"):
			if !strings.Contains(v["frame.protocols"], "lisp-data:ip:udp:lisp") || v["lisp-data.flags.iid"] != "1" ||
				v["lisp-data.iid"] != "16777215" || !strings.HasSuffix(v["ip.dst"], ",239.1.1.1") ||
				v["udp.dstport"] != "4341,4342" || v["lisp.type"] != "3" || v["lisp.mreg.flags.xtrid"] != "1" {
				t.Errorf("encapsulated Map-Register: %s", l)
			}
			src := strings.Split(v["ip.src"], ",")
			switch {
			case v["lisp.lcaf.mcinfo.grp.ipv4"] == "239.1.1.1" && v["lisp.lcaf.mcinfo.src.ipv4"] == "0.0.0.0":
				membership++
				if len(src) != 2 || v["lisp.lcaf.rle_entry.ipv4"] != src[1] {
					t.Errorf("membership RLE %q from %v", v["lisp.lcaf.rle_entry.ipv4"], src)
				}
			case strings.HasPrefix(v["lisp.mapping.eid.ipv4"], "10."):
				eid++
				if len(src) != 2 || v["lisp.loc.locator"] != src[1] {
					t.Errorf("EID locator %q from %v", v["lisp.loc.locator"], src)
				}
			default:
				t.Errorf("encapsulated Map-Register with neither: %s", l)
			}
		case v["lisp.type"] == "2" && v["ip.dst"] == labRLOC(50).String(): // the external look-up's answer
			reply++
			if v["lisp.lcaf.mcinfo.grp.ipv4"] != "239.1.1.1" || v["lisp.lcaf.rle_entry.ipv4"] != "10.99.0.10,10.99.0.11,10.99.0.12" {
				t.Errorf("group Map-Reply: %s", l)
			}
		}
	}
	t.Logf("tshark decoded %d encapsulated membership and %d EID Map-Registers, %d group Map-Replies", membership, eid, reply)
	if membership == 0 || eid == 0 || reply == 0 {
		t.Fatalf("capture lacks frames:\n%s", out)
	}
}

// nsName is the full name of node i's namespace.
func (l *pushLab) nsName(i int) string { return fmt.Sprintf("psv%s-n%d", l.topo.Tag, i) }
