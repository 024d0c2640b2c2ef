package afxdp

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket/layers"
)

// Decisions of the program (see xdpInstructions).
type decision int

const (
	dPass decision = iota // XDP_PASS
	dCtl                  // socket, XDP_PASS without one
	dData                 // socket, XDP_DROP (fail-closed) or XDP_PASS without one
)

func (d decision) String() string {
	return [...]string{"pass", "ctl", "data"}[d]
}

// code is the return code expected for decision d.
func (d decision) code(withSocket, failClosed bool) uint32 {
	switch {
	case d == dPass:
		return xdpPass
	case withSocket:
		return xdpRedirect
	case d == dData && failClosed:
		return xdpDrop
	default:
		return xdpPass
	}
}

type progCase struct {
	name          string
	frame         []byte
	routed, cross decision
}

// progCases are hand-made frames and the expected decision of a routed and
// of a cross-connect port. Local addresses: 192.0.2.2, 2001:db8::2, fe80::2.
func progCases(t testing.TB) []progCase {
	rtrAlert := []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
	short4 := rawEth(0x0800, 10) // claims IPv4, 10 bytes of header
	// LISP data headers (RFC 9300 §5.3) and an inner byte or two.
	decentData := []byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0, 0x45, 0}
	iid7Data := []byte{0x08, 0, 0, 0, 0, 0, 7, 0, 0x45, 0}
	noIData := []byte{0x80, 0, 0, 1, 0xff, 0xff, 0xff, 0, 0x45, 0} // N bit, nonce; the octets 0xffffff are the LSBs
	short6 := rawEth(0x86DD, 30)
	return []progCase{
		{"arp-local", arpReq(t, ipB), dPass, dPass},
		{"arp-nonlocal", arpReq(t, ipOther), dPass, dCtl},
		{"ns-local-target", ns6(t, ip6B), dPass, dPass},
		{"ns-linklocal-target", ns6(t, ip6LLB), dPass, dPass},
		{"ns-nonlocal-target", ns6(t, ip6Far), dPass, dCtl},
		{"na-unsolicited", icmp6(t, netip.MustParseAddr("ff02::1"), layers.ICMPv6TypeNeighborAdvertisement,
			&layers.ICMPv6NeighborAdvertisement{TargetAddress: ip6Far.AsSlice()}), dPass, dCtl},
		{"router-solicitation", icmp6(t, netip.MustParseAddr("ff02::2"), layers.ICMPv6TypeRouterSolicitation,
			&layers.ICMPv6RouterSolicitation{}), dPass, dCtl},
		{"na-to-local", icmp6(t, ip6B, layers.ICMPv6TypeNeighborAdvertisement,
			&layers.ICMPv6NeighborAdvertisement{TargetAddress: ip6A.AsSlice()}), dPass, dPass},
		{"udp4-local-4341", udp4(t, ipB, LISPDataPort, []byte("lisp")), dData, dData},
		{"udp4-local-53", udp4(t, ipB, 53, []byte("dns")), dPass, dPass},
		{"udp4-local-4342", udp4(t, ipB, 4342, []byte("lisp-ctl")), dPass, dPass},
		{"tcp4-local-179", tcp4(t, ipB, 179), dPass, dPass},
		{"udp4-local-4341-options", udp4Opts(t, ipB, LISPDataPort, []byte("lisp"), 0, rtrAlert), dData, dData},
		{"udp4-local-4341-fragment", udp4Opts(t, ipB, LISPDataPort, []byte("lisp"), layers.IPv4MoreFragments, nil), dPass, dPass},
		{"udp6-local-4341", udp6(t, ip6B, LISPDataPort, []byte("lisp")), dData, dData},
		// LISP-Decent unicast replication (I bit, instance-ID 0xffffff) to
		// us: the push node's data socket, in the kernel. Another
		// instance-ID, or none, is data for the engine; in transit too.
		{"udp4-local-4341-decent", udp4(t, ipB, LISPDataPort, decentData), dPass, dPass},
		{"udp4-local-4341-decent-options", udp4Opts(t, ipB, LISPDataPort, decentData, 0, rtrAlert), dPass, dPass},
		{"udp6-local-4341-decent", udp6(t, ip6B, LISPDataPort, decentData), dPass, dPass},
		{"udp4-local-4341-iid7", udp4(t, ipB, LISPDataPort, iid7Data), dData, dData},
		{"udp6-local-4341-iid7", udp6(t, ip6B, LISPDataPort, iid7Data), dData, dData},
		{"udp4-local-4341-no-ibit", udp4(t, ipB, LISPDataPort, noIData), dData, dData},
		{"udp6-local-4341-no-ibit", udp6(t, ip6B, LISPDataPort, noIData), dData, dData},
		{"udp4-transit-4341-decent", udp4(t, ipFar, LISPDataPort, decentData), dData, dData},
		{"udp6-local-53", udp6(t, ip6B, 53, []byte("dns")), dPass, dPass},
		{"udp6-linklocal-53", udp6(t, ip6LLB, 53, []byte("dns")), dPass, dPass},
		{"echo6-local", icmp6(t, ip6B, layers.ICMPv6TypeEchoRequest, nil), dPass, dPass},
		{"udp4-transit", udp4(t, ipFar, 53, []byte("x")), dData, dData},
		{"udp4-transit-4341", udp4(t, ipFar, LISPDataPort, []byte("x")), dData, dData},
		{"udp6-transit", udp6(t, ip6Far, 53, []byte("x")), dData, dData},
		{"echo6-transit", icmp6(t, ip6Far, layers.ICMPv6TypeEchoRequest, nil), dData, dData},
		{"udp4-multicast", udp4(t, netip.MustParseAddr("224.0.0.5"), 520, []byte("x")), dPass, dData},
		{"udp4-broadcast", udp4(t, netip.MustParseAddr("255.255.255.255"), 67, []byte("x")), dPass, dData},
		{"udp6-multicast", udp6(t, netip.MustParseAddr("ff02::1:2"), 547, []byte("x")), dPass, dData},
		{"ipv4-truncated", short4, dData, dData},
		{"ipv6-truncated", short6, dData, dData},
		{"lldp", rawEth(0x88CC, 46), dPass, dCtl},
		{"vlan", rawEth(0x8100, 46), dPass, dPass},
		{"qinq", rawEth(0x88A8, 46), dPass, dPass},
		{"arp-truncated", rawEth(0x0806, 10), dPass, dCtl},
	}
}

var progLocals = []netip.Addr{ipB, ip6B, ip6LLB}

// runCases checks every case against prog under every configuration.
func runCases(t *testing.T, prog *ebpf.Program, config *ebpf.Map, withSocket bool) {
	cases := progCases(t)
	for _, cross := range []bool{false, true} {
		for _, failClosed := range []bool{true, false} {
			o := Options{CrossConnect: cross, FailOpen: !failClosed}
			if err := config.Put(uint32(0), o.configFlags()); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				d := c.routed
				if cross {
					d = c.cross
				}
				want := d.code(withSocket, failClosed)
				got, err := prog.Run(&ebpf.RunOptions{Data: c.frame})
				if err != nil {
					t.Fatalf("%s: run: %v", c.name, err)
				}
				if got != want {
					t.Errorf("cross=%v failClosed=%v socket=%v %s: got %d, want %d (%s)",
						cross, failClosed, withSocket, c.name, got, want, d)
				}
			}
		}
	}
}

// TestProgramLoads checks that the verifier of this kernel accepts the
// program.
func TestProgramLoads(t *testing.T) {
	if r := Supported(); r != "" {
		t.Skip(r)
	}
	coll, err := ebpf.NewCollection(collectionSpec(1))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer coll.Close()
	info, err := coll.Programs[ProgramName].Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != ProgramName {
		t.Errorf("kernel name %q, want %q", info.Name, ProgramName)
	}
	t.Logf("%d instructions", len(xdpInstructions()))
}

// TestProgramDecisions runs the program (BPF_PROG_TEST_RUN) on hand-made
// frames with no socket registered: the return codes are the fallbacks.
func TestProgramDecisions(t *testing.T) {
	if r := Supported(); r != "" {
		t.Skip(r)
	}
	coll, err := ebpf.NewCollection(collectionSpec(1))
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	i := &Interface{name: "test", locals: coll.Maps[mapLocals]}
	if err := i.SetLocalAddrs(progLocals); err != nil {
		t.Fatal(err)
	}
	runCases(t, coll.Programs[ProgramName], coll.Maps[mapConfig], false)

	// The default configuration (what OpenInterface writes) is routed and
	// fail-closed.
	if f := (Options{}).configFlags(); f != cfgFailClosed {
		t.Errorf("default flags %#x, want fail-closed routed", f)
	}
}

// TestProgramDecisionsWithSocket registers a real socket for queue 0 and
// checks that socket-bound frames return XDP_REDIRECT.
func TestProgramDecisionsWithSocket(t *testing.T) {
	requireAFXDP(t)
	p := newPair(t, false)
	iface, _ := openIn(t, p.nsB, p.ifB, Options{Frames: 64, RingSize: 32})
	if err := iface.SetLocalAddrs(progLocals); err != nil {
		t.Fatal(err)
	}
	runCases(t, iface.prog, iface.config, true)
}

func TestSetLocalAddrs(t *testing.T) {
	if r := Supported(); r != "" {
		t.Skip(r)
	}
	coll, err := ebpf.NewCollection(collectionSpec(1))
	if err != nil {
		t.Fatal(err)
	}
	defer coll.Close()
	i := &Interface{name: "test", locals: coll.Maps[mapLocals]}
	if err := i.SetLocalAddrs([]netip.Addr{ipA, ipB, ip6B}); err != nil {
		t.Fatal(err)
	}
	// IPv4-mapped input is the same key as plain IPv4.
	if err := i.SetLocalAddrs([]netip.Addr{netip.AddrFrom16(ipB.As16()), ip6LLB}); err != nil {
		t.Fatal(err)
	}
	got, err := i.LocalAddrs()
	if err != nil {
		t.Fatal(err)
	}
	set := map[netip.Addr]bool{}
	for _, a := range got {
		set[a] = true
	}
	if len(got) != 2 || !set[ipB] || !set[ip6LLB] {
		t.Errorf("local addresses %v, want [%v %v]", got, ipB, ip6LLB)
	}
	// Keys are IPv4-mapped: ::ffff:192.0.2.2.
	var v uint8
	if err := coll.Maps[mapLocals].Lookup(netip.MustParseAddr("::ffff:192.0.2.2").As16(), &v); err != nil {
		t.Errorf("IPv4 key not stored IPv4-mapped: %v", err)
	}
	if err := i.SetLocalAddrs([]netip.Addr{{}}); err == nil {
		t.Error("invalid address accepted")
	}
}
