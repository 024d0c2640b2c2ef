package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/psavref"
	"github.com/psavd/psavd/internal/testtool"

	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/ports/pcap"
)

// TestLISPEndToEnd (issue 4, must-shows 2 and 4): two routed ABRs on
// AF_XDP as LISP xTRs across a transit router.
//
//	h1 ─ abr1 (AS 65001: ITR, Map-Server/Resolver on 10.0.1.3) ─ tr ─ abr2 (AS 65002: ETR) ─ h2
//
// abr2 registers its EID prefixes (AS Number LCAF) with the Map-Server on
// abr1, across tr. h1 sends to h2: abr1 misses in its map-cache (the first
// packets are dropped lisp-miss), its ITR asks the Map-Resolver, which
// forwards the Encapsulated Map-Request to abr2, whose ETR answers abr1;
// abr1 then tags the inner packet and encapsulates it to abr2's RLOC; abr2
// decapsulates, validates, strips and routes to h2. IPv4-in-IPv4,
// IPv6-in-IPv6 and IPv6-in-IPv4 (h2's two IPv6 prefixes are registered with
// an IPv6 and an IPv4 RLOC); h2 gets h1's packet octet for octet but the
// TTL. Datagrams too big once tagged and encapsulated get ICMP / ICMPv6
// Packet Too Big from abr1. A packet encapsulated by the transit router with an untagged inner
// source of AS 65001 is dropped at abr2. Every LISP packet seen on tr's
// links (Map-Register, Map-Notify, ECM, Map-Reply, data) is then decoded by
// tshark as LISP without a malformed or expert mark.
func TestLISPEndToEnd(t *testing.T) {
	skipUnlessLab(t)
	bin := psavdBinary(t)
	topo, must := newTopology(t)
	ns := map[string]string{}
	for _, n := range []string{"lh1", "labr1", "ltr", "labr2", "lh2"} {
		name, err := topo.NS(n)
		must(err)
		ns[n] = name
	}
	h1, abr1, tr, abr2, h2 := ns["lh1"], ns["labr1"], ns["ltr"], ns["labr2"], ns["lh2"]
	const (
		h1MAC, abr1InMAC, abr1OutMAC, trAMAC = "02:00:00:04:01:10", "02:00:00:04:01:01", "02:00:00:04:02:01", "02:00:00:04:02:02"
		trBMAC, abr2OutMAC, abr2InMAC, h2MAC = "02:00:00:04:03:02", "02:00:00:04:03:01", "02:00:00:04:04:01", "02:00:00:04:04:10"
	)
	must(topo.Veth(h1, "eth0", h1MAC, abr1, "in", abr1InMAC))
	must(topo.Veth(abr1, "out", abr1OutMAC, tr, "tra", trAMAC))
	must(topo.Veth(tr, "trb", trBMAC, abr2, "out", abr2OutMAC))
	must(topo.Veth(abr2, "in", abr2InMAC, h2, "eth0", h2MAC))
	addr := func(n, dev string, as ...string) {
		for _, a := range as {
			args := []string{"-n", n, "addr", "add", a, "dev", dev}
			if strings.Contains(a, ":") {
				args = append(args, "nodad")
			}
			must(netlab.IP(args...))
		}
	}
	addr(h1, "eth0", "198.51.100.10/24", "2001:db8:1::10/64")
	addr(abr1, "in", "198.51.100.1/24", "2001:db8:1::1/64")
	addr(abr1, "out", "10.0.1.1/24", "10.0.1.3/24", "fd00:1::1/64")
	addr(tr, "tra", "10.0.1.2/24", "fd00:1::2/64")
	addr(tr, "trb", "10.0.2.2/24", "fd00:2::2/64")
	addr(abr2, "out", "10.0.2.1/24", "fd00:2::1/64")
	addr(abr2, "in", "203.0.113.1/24", "2001:db8:2::1/64", "2001:db8:2:1::1/64")
	addr(h2, "eth0", "203.0.113.10/24", "2001:db8:2::10/64", "2001:db8:2:1::10/64")
	for _, c := range [][]string{
		{"-n", h1, "route", "add", "default", "via", "198.51.100.1"},
		{"-n", h1, "-6", "route", "add", "default", "via", "2001:db8:1::1"},
		{"-n", h2, "route", "add", "default", "via", "203.0.113.1"},
		{"-n", h2, "-6", "route", "add", "default", "via", "2001:db8:2::1"},
		// The ABRs' kernels reach each other (control traffic) through tr.
		{"-n", abr1, "route", "add", "10.0.2.0/24", "via", "10.0.1.2"},
		{"-n", abr1, "-6", "route", "add", "fd00:2::/64", "via", "fd00:1::2"},
		{"-n", abr2, "route", "add", "10.0.1.0/24", "via", "10.0.2.2"},
		{"-n", abr2, "-6", "route", "add", "fd00:1::/64", "via", "fd00:2::2"},
	} {
		must(netlab.IP(c...))
	}
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"} {
		if _, err := netlab.Exec(tr, "sysctl", "-w", s); err != nil {
			t.Fatalf("sysctl %s: %v", s, err)
		}
	}
	// Kernels send full checksums (an AF_XDP copy would carry a partial one,
	// and tshark checks them below).
	for _, x := range [][2]string{{h1, "eth0"}, {h2, "eth0"}, {abr1, "out"}, {abr2, "out"}, {tr, "tra"}, {tr, "trb"}} {
		if _, err := netlab.Exec(x[0], "ethtool", "-K", x[1], "tx", "off"); err != nil {
			t.Skipf("ethtool: %v", err)
		}
	}

	dir := t.TempDir()
	common := memberTOML(65001, "198.51.100.0/24", "2001:db8:1::/48") + memberTOML(65002, "203.0.113.0/24", "2001:db8:2::/48") +
		routedLISPPorts + metricsTOML("127.0.0.1:9100")
	peer := func(asn uint32) string { return staticPeerTOML(asn, time.Now().Unix()/60-1) }
	routes := func(inside, insideMAC, outsideMAC string) string {
		var b strings.Builder
		for _, p := range strings.Fields(inside) {
			b.WriteString(routeTOML(p, "inside", insideMAC))
		}
		for _, p := range []string{"0.0.0.0/0", "::/0"} {
			b.WriteString(routeTOML(p, "outside", outsideMAC))
		}
		return b.String()
	}
	cfg1 := psavTOML(65001) + peer(65002) + common + routes("198.51.100.0/24 2001:db8:1::/48", h1MAC, trAMAC) + `
[lisp]
rlocs = ["10.0.1.1", "fd00:1::1"]
control_listen = "10.0.1.1:4342"
[lisp.map_server]
listen = "10.0.1.3:4342"
[[lisp.site]]
name = "as65002"
key = "lisp-e2e-secret"
key_id = 2
eid_prefixes = ["203.0.113.0/24", "2001:db8:2::/48"]
accept_more_specifics = true
[[lisp.map_resolver]]
address = "10.0.1.3"
`
	cfg2 := psavTOML(65002) + peer(65001) + common + routes("203.0.113.0/24 2001:db8:2::/48", h2MAC, trBMAC) + `
[lisp]
rlocs = ["10.0.2.1", "fd00:2::1"]
[[lisp.database]]
eid = "203.0.113.0/24"
rlocs = [{ address = "10.0.2.1", priority = 1, weight = 100 }]
[[lisp.database]]
eid = "2001:db8:2::/64"
rlocs = [{ address = "fd00:2::1", priority = 1, weight = 100 }]
[[lisp.database]]
eid = "2001:db8:2:1::/64"
rlocs = [{ address = "10.0.2.1", priority = 1, weight = 100 }]
[[lisp.register_to]]
address = "10.0.1.3"
key = "lisp-e2e-secret"
key_id = 2
want_notify = true
`
	p1, p2 := filepath.Join(dir, "abr1.toml"), filepath.Join(dir, "abr2.toml")
	must(os.WriteFile(p1, []byte(cfg1), 0o644))
	must(os.WriteFile(p2, []byte(cfg2), 0o644))

	// tr's links see every control and data packet between the ABRs.
	trA, err := lab.Sniff(tr, "tra")
	must(err)
	defer trA.Close()
	trB, err := lab.Sniff(tr, "trb")
	must(err)
	defer trB.Close()
	at1, err := lab.Sniff(h1, "eth0")
	must(err)
	defer at1.Close()
	at2, err := lab.Sniff(h2, "eth0")
	must(err)
	defer at2.Close()

	startPsavd(t, bin, abr1, p1, true) // the Map-Server first: abr2 registers at start
	startPsavd(t, bin, abr2, p2, true)
	ctx := context.Background()
	// Traffic only once abr2 is registered (the Map-Server's Map-Notify
	// crossed tr): asked before, the Map-Resolver rightly answers with a
	// negative entry (natively forward, 1 minute) that tr cannot route.
	if !trA.Wait(ctx, 30*time.Second, func(fs []lab.Captured) bool {
		for _, f := range fs {
			if p := lispPayload(f.Frame); lispPort(f.Frame) == 4342 && len(p) > 0 && p[0]>>4 == 4 {
				return true
			}
		}
		return false
	}) {
		t.Fatal("no Map-Notify to abr2 within 30 s")
	}

	send := func(dst, payload string) {
		t.Helper()
		must(sendDatagram(h1, dst, payload))
	}
	for _, c := range []struct {
		name, dst  string
		outer6     bool // outer header family
		inner6     bool
		outerProto uint16
	}{
		{"ipv4-in-ipv4", "203.0.113.10:4242", false, false, 0x0800},
		{"ipv6-in-ipv6", "[2001:db8:2::10]:4242", true, true, 0x86dd},
		{"ipv6-in-ipv4", "[2001:db8:2:1::10]:4242", false, true, 0x0800},
	} {
		t.Run(c.name, func(t *testing.T) {
			var payload string
			delivered := false
			for i := 0; i < 150 && !delivered; i++ {
				payload = fmt.Sprintf("lisp-%s-%03d", c.name, i)
				send(c.dst, payload)
				delivered = at2.Wait(ctx, 200*time.Millisecond, func([]lab.Captured) bool { return frameWith(at2, payload, false) != nil })
			}
			if !delivered {
				t.Fatalf("nothing delivered to h2 for %s", c.dst)
			}
			// h1's own sniffer may report its copy after h2's.
			at1.Wait(ctx, 5*time.Second, func([]lab.Captured) bool { return frameWith(at1, payload, true) != nil })
			sent, got := lab.IPOf(frameWith(at1, payload, true)), lab.IPOf(frameWith(at2, payload, false))
			if sent == nil || got == nil {
				t.Fatal("sent or delivered frame not captured")
			}
			// Three hops: abr1, tr (on the outer header: the ETR takes the
			// outer TTL when it is lower, RFC 9300 §5.3) and abr2.
			if hopCount(got) != hopCount(sent)-3 || !bytes.Equal(normalised(got, 0), normalised(sent, 0)) {
				t.Fatalf("delivered packet differs from the sent one (but for three hops):\n sent %x\n  got %x", sent, got)
			}
			// On the transit link: encapsulated, outer family as registered,
			// UDP 4341, the inner packet tagged. tr's sniffer, too, may
			// report its copy after h2's.
			trA.Wait(ctx, 5*time.Second, func([]lab.Captured) bool { return frameWith(trA, payload, false) != nil })
			enc := frameWith(trA, payload, false)
			if enc == nil || binary.BigEndian.Uint16(enc[12:]) != c.outerProto {
				t.Fatalf("no encapsulated frame of EtherType %#04x on tr: %x", c.outerProto, enc)
			}
			udp := 14 + 20
			if c.outer6 {
				udp = 14 + 40
			}
			inner := enc[udp+16:]
			if binary.BigEndian.Uint16(enc[udp+2:]) != 4341 || enc[udp+8]&0x80 == 0 || (inner[0]>>4 == 6) != c.inner6 {
				t.Fatalf("not LISP data with an inner IPv%d packet: %x", map[bool]int{false: 4, true: 6}[c.inner6], enc[:min(len(enc), 120)])
			}
			if _, err := psavref.Find(inner); err != nil {
				t.Fatalf("inner packet not tagged: %v", err)
			}
		})
	}
	// Too big once tagged and encapsulated (port MTU 1500): a 1460-octet
	// IPv4 packet with DF (1460 + 16 + 36 > 1500) is answered with ICMP
	// Fragmentation Needed, next-hop MTU 1448, from abr1's RLOC; a
	// 1460-octet IPv6 packet (1460 + 16 + 56) with Packet Too Big, MTU 1428.
	for _, c := range []struct {
		dst     string
		payload int
		icmp    func(ip []byte) (ok bool, mtu uint32)
		mtu     uint32
	}{
		{"203.0.113.10:4243", 1460 - 28, func(ip []byte) (bool, uint32) {
			ok := ip[0]>>4 == 4 && ip[9] == 1 && ip[20] == 3 && ip[21] == 4 && netip.AddrFrom4([4]byte(ip[12:16])) == netip.MustParseAddr("10.0.1.1")
			return ok, uint32(binary.BigEndian.Uint16(ip[26:28]))
		}, 1448},
		{"[2001:db8:2::10]:4243", 1460 - 48, func(ip []byte) (bool, uint32) {
			ok := ip[0]>>4 == 6 && ip[6] == 58 && ip[40] == 2 && netip.AddrFrom16([16]byte(ip[8:24])) == netip.MustParseAddr("fd00:1::1")
			return ok, binary.BigEndian.Uint32(ip[44:48])
		}, 1428},
	} {
		big := strings.Repeat("B", c.payload-len("lisp-too-big"))
		send(c.dst, "lisp-too-big"+big)
		var mtu uint32
		if !at1.Wait(ctx, 10*time.Second, func(fs []lab.Captured) bool {
			for _, f := range fs {
				if ip := lab.IPOf(f.Frame); !f.Outgoing && ip != nil && len(ip) > 48 && bytes.Contains(f.Frame, []byte("lisp-too-big")) {
					if ok, m := c.icmp(ip); ok {
						mtu = m
						return true
					}
				}
			}
			return false
		}) {
			t.Fatalf("no Packet Too Big back to h1 for a %d-octet datagram to %s", c.payload, c.dst)
		}
		if mtu != c.mtu {
			t.Errorf("Packet Too Big to %s says MTU %d, want %d", c.dst, mtu, c.mtu)
		}
	}

	c1, err := lab.Scrape(ctx, abr1, "127.0.0.1:9100")
	must(err)
	if c1.Total("drops", "lisp-miss") < 1 || c1.Total("packets", "tagged") < 3 || c1.Total("packets", "icmp-too-big") < 2 {
		t.Errorf("abr1: want lisp-miss drops before the Map-Reply, 3 tagged, 2 icmp-too-big; %v", c1)
	}

	// A LISP packet from tr with an untagged inner source of AS 65001.
	inner := header.AppendIPv4(nil, header.IPv4Fields{ID: 7, Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: 17, Src: netip.MustParseAddr("198.51.100.10"), Dst: netip.MustParseAddr("203.0.113.10")}, udpDatagram(4242, 4242, []byte("lisp-spoofed-inner")))
	must(netlab.Do(tr, func() error {
		c, err := net.Dial("udp", "10.0.2.1:4341")
		if err != nil {
			return err
		}
		defer c.Close()
		for i := 0; i < 3; i++ {
			if _, err := c.Write(append([]byte{0x80, 0, 0, byte(i), 0, 0, 0, 0}, inner...)); err != nil {
				return err
			}
		}
		return nil
	}))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c2, err := lab.Scrape(ctx, abr2, "127.0.0.1:9100")
		must(err)
		if c2.Total("drops", "no-tag") >= 3 {
			if c2.Total("packets", "validated") < 3 {
				t.Errorf("abr2 validated %v, want ≥ 3", c2.Total("packets", "validated"))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spoofed inner source not dropped no-tag at abr2: %v", c2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if frameWith(at2, "lisp-spoofed-inner", false) != nil {
		t.Fatal("a spoofed inner source reached h2")
	}

	checkLISPWithTshark(t, dir, append(trA.Frames(), trB.Frames()...))
}

// udpDatagram is a UDP header (checksum 0: optional over IPv4) and payload.
func udpDatagram(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// lispPayload returns the UDP payload of an IPv4/IPv6 UDP frame, or nil.
func lispPayload(f []byte) []byte {
	ip := lab.IPOf(f)
	switch {
	case ip == nil:
	case ip[0]>>4 == 4 && len(ip) >= 28 && ip[9] == 17 && len(ip) >= int(ip[0]&0xf)*4+8:
		return ip[int(ip[0]&0xf)*4+8:]
	case ip[0]>>4 == 6 && len(ip) >= 48 && ip[6] == 17:
		return ip[48:]
	}
	return nil
}

// lispPort returns the LISP UDP port (4341 or 4342) a frame is to or from,
// or 0.
func lispPort(f []byte) uint16 {
	ip := lab.IPOf(f)
	var udp []byte
	switch {
	case ip == nil:
		return 0
	case ip[0]>>4 == 4 && len(ip) >= 28 && ip[9] == 17:
		udp = ip[int(ip[0]&0xf)*4:]
	case ip[0]>>4 == 6 && len(ip) >= 48 && ip[6] == 17:
		udp = ip[40:]
	default:
		return 0
	}
	for _, p := range []uint16{binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint16(udp[2:])} {
		if p == 4341 || p == 4342 {
			return p
		}
	}
	return 0
}

// checkLISPWithTshark writes the LISP frames among captured to a pcap and
// has tshark decode them: every one must be LISP (control on 4342, data on
// 4341) with no malformed field and no expert item of warning or error
// severity (checksums checked). tshark notes (severity "note") that the
// inner IPv6 packet's Destination Option — the PSAV tag, type 0x3B — is
// data it does not interpret: logged, not a LISP decoding problem. And
// the capture must hold Map-Register, Map-Notify, ECM (with its
// Map-Request), Map-Reply and data packets.
func checkLISPWithTshark(t *testing.T, dir string, captured []lab.Captured) {
	t.Helper()
	if _, ok := testtool.Find("tshark"); !ok {
		if testtool.Required() {
			t.Fatal("tshark not installed, and make test requires it: LISP capture not decoded")
		}
		t.Log("tshark not installed: LISP capture not decoded")
		return
	}
	var frames [][]byte
	var ports []uint16
	for _, c := range captured {
		if p := lispPort(c.Frame); p != 0 {
			frames = append(frames, c.Frame)
			ports = append(ports, p)
		}
	}
	file := filepath.Join(dir, "lisp-live.pcap")
	if err := pcap.WriteFile(file, time.Now(), frames...); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("tshark", "-r", file, "-n", "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "frame.protocols", "-e", "_ws.malformed", "-e", "_ws.expert.severity", "-e", "_ws.expert.message", "-e", "lisp.type").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tshark printed %d lines for %d frames", len(lines), len(frames))
	}
	seen := map[string]int{}
	for i, l := range lines {
		f := strings.Split(l, "|")
		protos, malformed, severity, msg, types := f[0], f[1], f[2], f[3], f[4]
		want := ":lisp"
		if ports[i] == 4341 {
			want = ":lisp-data"
			malformed, severity, msg = withoutPayloadMalformed(protos, malformed, severity, msg)
		}
		bad := false
		for _, sv := range strings.Split(severity, ",") {
			// Wireshark severities: chat 0x200000, note 0x400000, warn 0x600000, error 0x800000.
			if n, err := strconv.Atoi(sv); sv != "" && (err != nil || n >= 0x600000) {
				bad = true
			}
		}
		if !strings.Contains(protos, want) || malformed != "" || bad {
			t.Errorf("frame %d (port %d): protocols %q malformed %q expert %q %q", i+1, ports[i], protos, malformed, severity, msg)
		} else if severity != "" {
			seen["note: "+msg]++
		}
		if ports[i] == 4341 {
			seen["data"]++
		}
		for _, ty := range strings.Split(types, ",") {
			seen["type"+ty]++
		}
	}
	t.Logf("tshark decoded %d live LISP frames: %v", len(frames), seen)
	for _, need := range []string{"type1", "type2", "type3", "type4", "type8", "data"} {
		if seen[need] == 0 {
			t.Errorf("no %s among the captured LISP frames (%v)", need, seen)
		}
	}
}

// withoutPayloadMalformed drops from a LISP data frame's tshark fields a
// "Malformed Packet" that tshark raised in the inner datagram's payload:
// that payload is the test's own bytes, which tshark hands to whatever
// dissector claims one of the inner ports (an ephemeral source port can
// be, e.g., HCrt's), so it says nothing of the LISP encapsulation or of
// the inner IP and transport headers, which are still judged.
func withoutPayloadMalformed(protos, malformed, severity, msg string) (string, string, string) {
	_, inner, ok := strings.Cut(protos, ":lisp-data:")
	layers := strings.Split(inner, ":")
	if !ok || malformed == "" || len(layers) < 3 || (layers[1] != "udp" && layers[1] != "tcp") {
		return malformed, severity, msg
	}
	payload := map[string]bool{}
	for _, l := range layers[2:] {
		payload[strings.ToLower(l)] = true
	}
	for _, m := range strings.Split(malformed, ",") {
		if m == "_ws.malformed" {
			continue // the field's own name, printed alongside
		}
		name, found := strings.CutPrefix(m, "[Malformed Packet: ")
		if !found || !payload[strings.ToLower(strings.TrimSuffix(name, "]"))] {
			return malformed, severity, msg // a malformation outside the payload
		}
	}
	sevs, msgs := strings.Split(severity, ","), strings.Split(msg, ",")
	var keptSev, keptMsg []string
	for j := range sevs {
		if j < len(msgs) && strings.HasPrefix(msgs[j], "Malformed Packet") {
			continue
		}
		keptSev = append(keptSev, sevs[j])
		if j < len(msgs) {
			keptMsg = append(keptMsg, msgs[j])
		}
	}
	return "", strings.Join(keptSev, ","), strings.Join(keptMsg, ",")
}

// sendDatagram sends one UDP datagram with payload to dst ("host:port")
// from a socket in namespace ns.
func sendDatagram(ns, dst, payload string) error {
	return netlab.Do(ns, func() error {
		c, err := net.Dial("udp", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(payload))
		return err
	})
}

// frameWith returns the first frame s captured in the given direction
// that carries payload, or nil.
func frameWith(s *lab.Sniffer, payload string, outgoing bool) []byte {
	for _, f := range s.Frames() {
		if f.Outgoing == outgoing && bytes.Contains(f.Frame, []byte(payload)) {
			return f.Frame
		}
	}
	return nil
}

// TestWithoutPayloadMalformed: a malformation tshark finds in the inner
// datagram's payload is dropped; one in LISP or in the inner headers stays.
func TestWithoutPayloadMalformed(t *testing.T) {
	const protos = "eth:ethertype:ip:udp:lisp-data:ip:udp:hcrt"
	m, sev, msg := withoutPayloadMalformed(protos, "[Malformed Packet: HCrt],_ws.malformed", "8388608", "Malformed Packet (Exception occurred)")
	if m != "" || sev != "" || msg != "" {
		t.Errorf("payload malformation kept: %q %q %q", m, sev, msg)
	}
	for _, c := range [][2]string{
		{protos, "[Malformed Packet: LISP-Data],_ws.malformed"},
		{"eth:ethertype:ip:udp:lisp-data:ip", "[Malformed Packet: IP],_ws.malformed"},
		{"eth:ethertype:ip:udp:lisp-data:ip:udp", "[Malformed Packet: UDP],_ws.malformed"},
	} {
		if m, _, _ := withoutPayloadMalformed(c[0], c[1], "8388608", "Malformed Packet (Exception occurred)"); m == "" {
			t.Errorf("%s: %s dropped", c[0], c[1])
		}
	}
}
