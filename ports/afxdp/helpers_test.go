package afxdp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/asavie/xdp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/internal/netlab"
)

// Fixed addresses of the test topology (documentation ranges, inside
// namespaces the test makes).
var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}

	ipA     = netip.MustParseAddr("192.0.2.1")
	ipB     = netip.MustParseAddr("192.0.2.2")
	ip6B    = netip.MustParseAddr("2001:db8::2")
	ipFar   = netip.MustParseAddr("198.51.100.7")
	ip6Far  = netip.MustParseAddr("2001:db8:1::7")
	ip6A    = netip.MustParseAddr("2001:db8::1")
	ip6LLB  = netip.MustParseAddr("fe80::2")
	ipOther = netip.MustParseAddr("192.0.2.99")
)

// requireAFXDP skips the test where AF_XDP or namespaces cannot be used.
func requireAFXDP(t testing.TB) {
	t.Helper()
	if r := Supported(); r != "" {
		t.Skip(r)
	}
	if r := netlab.Supported(); r != "" {
		t.Skip(r)
	}
}

// pair is a veth pair between namespaces A (a0) and B (b0).
type pair struct {
	topo   *netlab.Topology
	nsA    string
	nsB    string
	ifA    string
	ifB    string
	addrsB bool
}

// newPair builds namespaces A and B joined by a veth pair, deleted when the
// test ends (also on failure). With addrs, a0 gets 192.0.2.1/24 and
// 2001:db8::1/64, b0 gets 192.0.2.2/24 and 2001:db8::2/64.
func newPair(t testing.TB, addrs bool) *pair {
	t.Helper()
	topo := netlab.New()
	t.Cleanup(func() { _ = topo.Close() })
	nsA, err := topo.NS("a")
	if err != nil {
		t.Fatal(err)
	}
	nsB, err := topo.NS("b")
	if err != nil {
		t.Fatal(err)
	}
	p := &pair{topo: topo, nsA: nsA, nsB: nsB, ifA: "a0", ifB: "b0", addrsB: addrs}
	if err := topo.Veth(nsA, p.ifA, macA.String(), nsB, p.ifB, macB.String()); err != nil {
		t.Fatal(err)
	}
	if addrs {
		for _, c := range [][]string{
			{"-n", nsA, "addr", "add", "192.0.2.1/24", "dev", p.ifA},
			{"-n", nsA, "-6", "addr", "add", "2001:db8::1/64", "dev", p.ifA, "nodad"},
			{"-n", nsB, "addr", "add", "192.0.2.2/24", "dev", p.ifB},
			{"-n", nsB, "-6", "addr", "add", "2001:db8::2/64", "dev", p.ifB, "nodad"},
		} {
			if err := netlab.IP(c...); err != nil {
				t.Fatal(err)
			}
		}
	}
	return p
}

// openIn opens the interface and queue 0 inside namespace ns; both are
// closed when the test ends.
func openIn(t testing.TB, ns, ifname string, opts Options) (*Interface, *Port) {
	t.Helper()
	var iface *Interface
	var port *Port
	err := netlab.Do(ns, func() error {
		var err error
		iface, err = OpenInterface(ifname, opts)
		if err != nil {
			return err
		}
		port, err = iface.OpenQueue(ifname+"/0", 0)
		return err
	})
	if iface != nil {
		t.Cleanup(func() { _ = iface.Close() })
	}
	if err != nil {
		t.Fatal(err)
	}
	return iface, port
}

// xdpShow returns `ip -d link show` of an interface in a namespace.
func xdpShow(t testing.TB, ns, ifname string) string {
	t.Helper()
	out, err := netlab.Run("ip", "-n", ns, "-d", "link", "show", "dev", ifname)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func hasXDP(out string) bool { return strings.Contains(out, "prog/xdp") }

// rawSock is an AF_PACKET socket bound to one interface.
type rawSock struct {
	fd      int
	ifindex int
}

// openRaw opens an AF_PACKET socket on ifname inside ns. It is closed when
// the test ends.
func openRaw(t testing.TB, ns, ifname string) *rawSock {
	t.Helper()
	r := &rawSock{fd: -1}
	err := netlab.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		r.ifindex = ifi.Index
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		r.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if r.fd >= 0 {
		t.Cleanup(func() { unix.Close(r.fd) })
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (r *rawSock) send(t testing.TB, frame []byte) {
	t.Helper()
	if _, err := unix.Write(r.fd, frame); err != nil {
		t.Fatalf("AF_PACKET send: %v", err)
	}
}

// recv returns the next frame received (not sent) on the interface, or nil
// after the receive timeout (20 ms).
func (r *rawSock) recv(buf []byte) []byte {
	for {
		n, from, err := unix.Recvfrom(r.fd, buf, 0)
		if err != nil {
			return nil
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		return buf[:n]
	}
}

// --- Frame builders.

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(t layers.EthernetType, dst net.HardwareAddr) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: dst, EthernetType: t}
}

func udp4(t testing.TB, dst netip.Addr, dport uint16, payload []byte) []byte {
	return udp4Opts(t, dst, dport, payload, 0, nil)
}

func udp4Opts(t testing.TB, dst netip.Addr, dport uint16, payload []byte, flags layers.IPv4Flag, opts []layers.IPv4Option) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, Flags: flags,
		SrcIP: ipA.AsSlice(), DstIP: dst.AsSlice(), Options: opts}
	u := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(dport)}
	_ = u.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4, macB), ip, u, gopacket.Payload(payload))
}

func tcp4(t testing.TB, dst netip.Addr, dport uint16) []byte {
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: ipA.AsSlice(), DstIP: dst.AsSlice()}
	tc := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(dport), SYN: true, Window: 1000}
	_ = tc.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4, macB), ip, tc)
}

func udp6(t testing.TB, dst netip.Addr, dport uint16, payload []byte) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: ip6A.AsSlice(), DstIP: dst.AsSlice()}
	u := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(dport)}
	_ = u.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv6, macB), ip, u, gopacket.Payload(payload))
}

func icmp6(t testing.TB, dst netip.Addr, typ uint8, body gopacket.SerializableLayer) []byte {
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: ip6A.AsSlice(), DstIP: dst.AsSlice()}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	_ = ic.SetNetworkLayerForChecksum(ip)
	ls := []gopacket.SerializableLayer{eth(layers.EthernetTypeIPv6, macB), ip, ic}
	if body != nil {
		ls = append(ls, body)
	}
	return serialize(t, ls...)
}

// solicitedNode returns the solicited-node multicast address of a.
func solicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
}

func ns6(t testing.TB, target netip.Addr) []byte {
	return icmp6(t, solicitedNode(target), layers.ICMPv6TypeNeighborSolicitation,
		&layers.ICMPv6NeighborSolicitation{TargetAddress: target.AsSlice()})
}

func arpReq(t testing.TB, target netip.Addr) []byte {
	a := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: macA, SourceProtAddress: ipA.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: target.AsSlice()}
	return serialize(t, eth(layers.EthernetTypeARP, layers.EthernetBroadcast), a)
}

// rawEth is an Ethernet frame with any EtherType and a zero payload.
func rawEth(etype uint16, payloadLen int) []byte {
	f := make([]byte, 14+payloadLen)
	copy(f, macB)
	copy(f[6:], macA)
	binary.BigEndian.PutUint16(f[12:], etype)
	return f
}

// testFrame is a transit UDP frame carrying a sequence number, from src to
// dst MAC, distinct in length and content for each seq.
func testFrame(t testing.TB, src, dst net.HardwareAddr, seq int) []byte {
	payload := make([]byte, 18+seq%97)
	copy(payload, "psavd-afxdp-test")
	binary.BigEndian.PutUint16(payload[16:], uint16(seq))
	for i := 18; i < len(payload); i++ {
		payload[i] = byte(seq + i)
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: ipA.AsSlice(), DstIP: ipFar.AsSlice()}
	u := &layers.UDP{SrcPort: 40000, DstPort: 9}
	_ = u.SetNetworkLayerForChecksum(ip)
	e := &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: layers.EthernetTypeIPv4}
	return serialize(t, e, ip, u, gopacket.Payload(payload))
}

// isTestFrame reports whether f carries a testFrame payload.
func isTestFrame(f []byte) bool {
	return len(f) > 42+16 && string(f[42:58]) == "psavd-afxdp-test"
}

// --- Peeking at asavie's completion ring (tests only).

// umemRingMirror has the layout of asavie v0.3.3's unexported umemRing.
type umemRingMirror struct {
	Producer *uint32
	Consumer *uint32
	Descs    []uint64
}

// completionRing returns asavie's completion ring of s, read through
// reflection: asavie's Complete does not return addresses, so this is the
// only way to see them.
func completionRing(s *xdp.Socket) (*umemRingMirror, error) {
	f := reflect.ValueOf(s).Elem().FieldByName("completionRing")
	if !f.IsValid() || f.Type().Size() != unsafe.Sizeof(umemRingMirror{}) || f.Type().NumField() != 3 {
		return nil, fmt.Errorf("asavie's Socket layout changed")
	}
	return (*umemRingMirror)(unsafe.Pointer(f.UnsafeAddr())), nil
}
