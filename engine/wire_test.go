package engine_test

// The worked vectors of docs/wire.md (§2.3–§2.5, "Vectors"), asserted
// against the engine's exported API and against an independent computation
// (crypto/hmac, github.com/dchest/siphash and packets assembled field by
// field here), and found verbatim in docs/wire.md, so that the document
// cannot drift from the code. Change a value here only together with the
// document.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/psavd/psavd/engine/header"

	"github.com/dchest/siphash"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/ports"
)

// Key schedule (docs/wire.md §2.5): S(e0) = 00 01 … 1f, e0 = 29000000,
// between AS 65001 and AS 65002.
const (
	wireASLow   = 65001
	wireASHigh  = 65002
	wireE0      = 29000000
	wireS0      = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	wireContext = "0000fde90000fdea0000000001ba8140" // lowASN ‖ highASN ‖ e0
	wireS1      = "7992bb3aa003fee5a9b6e15be7a3c924a891db2988747a784da6a06389f78775"
	wireK0      = "3a961b7e8b9cf6199e1b69bb275b9fbb" // K(e0)
	wireK1      = "82713e4466cd960d62bf45cb9f664e8d" // K(e0+1)
	wireK1k0    = "0x0d96cd66443e7182"               // K(e0+1) octets 0–7, little-endian
	wireK1k1    = "0x8d4e669fcb45bf62"               // K(e0+1) octets 8–15, little-endian
)

// Epoch (docs/wire.md §2.5): T0 = 0, P = 60; the packets are tagged at
// unix time wireNow, in epoch e0+1, epoch octet 0x41.
const (
	wirePeriod     = 60
	wireNow        = 1740000090
	wireEpoch      = wireE0 + 1
	wireEpochOctet = 0x41
)

// Tag computation (docs/wire.md §2.4) with K(e0+1): UDP 4242 → 53, so the
// first payload octet is 0x10.
const (
	wireSrc4, wireDst4 = "198.51.100.10", "203.0.113.10"
	wirePfx4           = 24
	wireTag4           = "b34548be2e54ac50"
	wireSrc6, wireDst6 = "2001:db8:1::10", "2001:db8:2::10"
	wirePfx6           = 48
	wireTag6           = "ed3400437b890921"
	wireFirstOctet     = 0x10
)

// IP packets (docs/wire.md §2.3) before and after tagging at wireNow by AS
// 65001 for AS 65002 (AS-Prefix table: 65001 = 198.51.100.0/24 and
// 2001:db8:1::/48, 65002 = 203.0.113.0/24 and 2001:db8:2::/48).
const (
	wire4In = "45000025123400004011024cc633640acb00710a" +
		"1092003500110000707361762074657374"
	wire4Out = "49000035123400004011d66ac633640acb00710a" +
		"9e0e7100b34548be2e54ac5041180101" +
		"1092003500110000707361762074657374"
	wire6In = "6000000000111140" +
		"20010db8000100000000000000000010" +
		"20010db8000200000000000000000010" +
		"1092003500110000707361762074657374"
	wire6Out = "6000000000213c40" +
		"20010db8000100000000000000000010" +
		"20010db8000200000000000000000010" +
		"11013b0c7100ed3400437b8909214130" +
		"1092003500110000707361762074657374"
	wire6DoIn = "6000000000193c40" +
		"20010db8000100000000000000000010" +
		"20010db8000200000000000000000010" +
		"1100010400000000" +
		"1092003500110000707361762074657374"
	wire6DoOut = "6000000000293c40" +
		"20010db8000100000000000000000010" +
		"20010db8000200000000000000000010" +
		"1102010400000000" +
		"01003b0c7100ed3400437b8909214130" +
		"1092003500110000707361762074657374"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wireState(t testing.TB) engine.State {
	return engine.State(unhex(t, wireS0))
}

// hmacSHA256 is the independent side of the key schedule.
func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func TestWireKeySchedule(t *testing.T) {
	s0 := wireState(t)
	s1 := s0.Next()
	k0, k1 := s0.TagKey(), s1.TagKey()
	for _, c := range []struct{ name, got, want string }{
		{"S(e0+1)", hex.EncodeToString(s1[:]), wireS1},
		{"K(e0)", hex.EncodeToString(k0[:]), wireK0},
		{"K(e0+1)", hex.EncodeToString(k1[:]), wireK1},
	} {
		if c.got != c.want {
			t.Errorf("engine %s = %s, docs/wire.md says %s", c.name, c.got, c.want)
		}
	}
	a, b := k1.Halves()
	if got := fmt.Sprintf("%#016x", a); got != wireK1k0 {
		t.Errorf("K(e0+1) k0 = %s, want %s", got, wireK1k0)
	}
	if got := fmt.Sprintf("%#016x", b); got != wireK1k1 {
		t.Errorf("K(e0+1) k1 = %s, want %s", got, wireK1k1)
	}

	// The state machine gives the same keys by epoch number.
	m := engine.NewStateMachine(wireE0, s0)
	if k, ok := m.Key(wireE0); !ok || k != k0 {
		t.Errorf("StateMachine.Key(e0) = %x, %v", k, ok)
	}
	if k, ok := m.Key(wireE0 + 1); !ok || k != k1 {
		t.Errorf("StateMachine.Key(e0+1) = %x, %v", k, ok)
	}
	if _, ok := m.Key(wireE0); ok {
		t.Error("S(e0) still usable after the machine moved on (it must be erased)")
	}

	// Independently: S(e+1) = HMAC-SHA256(S(e), "psav state"), K(e) = first
	// 16 octets of HMAC-SHA256(S(e), "psav tag key").
	is1 := hmacSHA256(unhex(t, wireS0), "psav state")
	if hex.EncodeToString(is1) != wireS1 {
		t.Errorf("independent S(e0+1) = %x", is1)
	}
	if ik := hmacSHA256(unhex(t, wireS0), "psav tag key")[:16]; hex.EncodeToString(ik) != wireK0 {
		t.Errorf("independent K(e0) = %x", ik)
	}
	ik1 := hmacSHA256(is1, "psav tag key")[:16]
	if hex.EncodeToString(ik1) != wireK1 {
		t.Errorf("independent K(e0+1) = %x", ik1)
	}
	if got := fmt.Sprintf("%#016x", binary.LittleEndian.Uint64(ik1[:8])); got != wireK1k0 {
		t.Errorf("independent k0 = %s", got)
	}

	// The TLS exporter context of S(e0): lowASN(4) ‖ highASN(4) ‖ e0(8),
	// big-endian, the same whichever side builds it.
	var ctx [16]byte
	binary.BigEndian.PutUint32(ctx[0:4], wireASLow)
	binary.BigEndian.PutUint32(ctx[4:8], wireASHigh)
	binary.BigEndian.PutUint64(ctx[8:16], wireE0)
	if hex.EncodeToString(ctx[:]) != wireContext {
		t.Errorf("exporter context = %x, want %s", ctx, wireContext)
	}
}

func TestWireEpoch(t *testing.T) {
	if e := engine.Epoch(wireNow, 0, wirePeriod); e != wireEpoch || byte(e) != wireEpochOctet {
		t.Errorf("Epoch(%d, 0, %d) = %d (octet %#x), want %d (octet %#x)", wireNow, wirePeriod, e, byte(e), wireEpoch, wireEpochOctet)
	}
	// floor((unix − T0) / P): a boundary belongs to the epoch it starts.
	start := int64(wireEpoch) * wirePeriod
	if engine.Epoch(start, 0, wirePeriod) != wireEpoch || engine.Epoch(start-1, 0, wirePeriod) != wireEpoch-1 {
		t.Error("epoch boundary")
	}
	if engine.Epoch(99, 100, wirePeriod) != -1 {
		t.Error("an instant before T0 has an epoch")
	}
}

// msg16 builds src16 ‖ dst16 ‖ first ‖ pfx independently of the engine.
func msg16(src, dst string, first, pfx byte) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	return append(append(append([]byte{}, s[:]...), d[:]...), first, pfx)
}

func TestWireTag(t *testing.T) {
	k := engine.Key(unhex(t, wireK1))
	k0, k1 := k.Halves()
	for _, v := range []struct {
		src, dst string
		pfx      byte
		want     string
	}{
		{wireSrc4, wireDst4, wirePfx4, wireTag4},
		{wireSrc6, wireDst6, wirePfx6, wireTag6},
	} {
		src, dst := netip.MustParseAddr(v.src).As16(), netip.MustParseAddr(v.dst).As16()
		if got := fmt.Sprintf("%016x", engine.ComputeTag(k0, k1, &src, &dst, wireFirstOctet, v.pfx)); got != v.want {
			t.Errorf("engine tag %s → %s = %s, want %s", v.src, v.dst, got, v.want)
		}
		// Independently: the key's halves little-endian, the 34-octet message.
		raw := unhex(t, wireK1)
		m := msg16(v.src, v.dst, wireFirstOctet, v.pfx)
		if len(m) != 34 {
			t.Fatalf("message of %d octets", len(m))
		}
		got := siphash.Hash(binary.LittleEndian.Uint64(raw[:8]), binary.LittleEndian.Uint64(raw[8:]), m)
		if fmt.Sprintf("%016x", got) != v.want {
			t.Errorf("independent tag %s → %s = %016x, want %s", v.src, v.dst, got, v.want)
		}
	}
	// IPv4 is hashed as IPv4-mapped IPv6.
	if m := msg16(wireSrc4, wireDst4, 0, 0); hex.EncodeToString(m[:16]) != "00000000000000000000ffffc633640a" {
		t.Errorf("src16 of %s = %x", wireSrc4, m[:16])
	}
}

// wireTables is the snapshot of the ABR of AS local in the vectors'
// two-AS alliance, at unix time now: keys of epochs e−1 … e+2 (from e0 on).
func wireTables(t testing.TB, local uint32, now int64) *engine.Tables {
	t.Helper()
	b := engine.NewPrefixTableBuilder()
	for _, p := range []struct {
		prefix string
		member int
	}{{"198.51.100.0/24", 0}, {"2001:db8:1::/48", 0}, {"203.0.113.0/24", 1}, {"2001:db8:2::/48", 1}} {
		if err := b.Add(netip.MustParsePrefix(p.prefix), p.member); err != nil {
			t.Fatal(err)
		}
	}
	remote := 1
	if local == wireASHigh {
		remote = 0
	}
	tb := &engine.Tables{Period: wirePeriod, Prefixes: b.Table(), Peers: make([]engine.PeerKeys, 1)}
	tb.Members = []engine.Member{
		{ASN: wireASLow, Local: local == wireASLow, TagPeer: -1, ValidatePeer: -1},
		{ASN: wireASHigh, Local: local == wireASHigh, TagPeer: -1, ValidatePeer: -1},
	}
	tb.Members[remote].TagPeer, tb.Members[remote].ValidatePeer = 0, 0
	tb.Peers[0].ASN = tb.Members[remote].ASN
	from := max(engine.Epoch(now, 0, wirePeriod)-1, wireE0)
	keys, ok := engine.NewStateMachine(wireE0, wireState(t)).Window(uint64(from), engine.KeyWindow)
	if !ok {
		t.Fatal("key window")
	}
	for i, k := range keys {
		tb.Peers[0].SetKey(from+int64(i), k)
	}
	return tb
}

var wireEth = []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1}

// wireRun puts one IP packet, in an Ethernet frame, through the ABR of AS
// local (port 0 inside/ingress, port 1 outside/egress, cross-connected),
// arriving on port in at unix time now. It returns the IP packet that
// leaves (nil if dropped) and the counters.
func wireRun(t *testing.T, local uint32, in int, ip []byte, now int64) ([]byte, *engine.Counters) {
	t.Helper()
	e, err := engine.New(engine.Spec{Ports: []engine.PortSpec{
		{Name: "inside", Role: engine.RoleIngress, Peer: 1},
		{Name: "outside", Role: engine.RoleEgress, Peer: 0},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.Publish(wireTables(t, local, now))
	frame := append(append(append([]byte{}, wireEth...), 0, 0), ip...)
	binary.BigEndian.PutUint16(frame[12:14], map[byte]uint16{4: 0x0800, 6: 0x86dd}[ip[0]>>4])
	buf := make([]byte, ports.Headroom+ports.MaxFrame)
	n := copy(buf[ports.Headroom:], frame)
	batch := ports.NewBatch(1)
	batch.Pkts = append(batch.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
	pr := e.NewProcessor(in)
	pr.Process(batch, e.Tables(), now)
	p := batch.Pkts[0]
	if p.Out == ports.Drop {
		return nil, pr.Counters
	}
	if int(p.Out) != 1-in {
		t.Fatalf("left by port %d", p.Out)
	}
	out := p.Frame()
	if !bytes.Equal(out[:12], wireEth) {
		t.Fatalf("MAC addresses changed: %x", out[:12])
	}
	return append([]byte(nil), out[14:]...), pr.Counters
}

// psavOption is the 14 octets of the PSAV option from the option type on.
func psavOption(typ, length byte, tag string, t testing.TB) []byte {
	o := []byte{typ, length, 0x71, 0}
	o = append(o, unhex(t, tag)...)
	return append(o, wireEpochOctet, 0)
}

// assemble builds the tagged packet from the untagged one by the rules of
// docs/wire.md §2.3, independently of the engine.
func assemble(t testing.TB, name string, in []byte) []byte {
	switch name {
	case "ipv4":
		opt := psavOption(0x9e, 14, wireTag4, t)
		opt[13] = wirePfx4
		opt = append(opt, 1, 1) // two NOPs
		out := append(append(append([]byte{}, in[:20]...), opt...), in[20:]...)
		out[0] = 0x40 | (20+16)/4
		binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
		out[10], out[11] = 0, 0
		binary.BigEndian.PutUint16(out[10:12], ^header.Checksum(out[:36], 0))
		return out
	case "ipv6":
		opt := psavOption(0x3b, 12, wireTag6, t)
		opt[13] = wirePfx6
		doh := append([]byte{in[6], 1}, opt...) // Next Header, Hdr Ext Len 1
		out := append(append(append([]byte{}, in[:40]...), doh...), in[40:]...)
		out[6] = 60
		binary.BigEndian.PutUint16(out[4:6], uint16(len(out)-40))
		return out
	case "ipv6-existing-destopts":
		opt := psavOption(0x3b, 12, wireTag6, t)
		opt[13] = wirePfx6
		hlen := (int(in[41]) + 1) * 8
		out := append([]byte{}, in[:40+hlen]...)
		out[41] += 2
		out = append(append(append(out, 1, 0), opt...), in[40+hlen:]...) // PadN(0), option
		binary.BigEndian.PutUint16(out[4:6], uint16(len(out)-40))
		return out
	}
	t.Fatalf("no vector %s", name)
	return nil
}

func TestWirePackets(t *testing.T) {
	for _, v := range []struct{ name, in, out string }{
		{"ipv4", wire4In, wire4Out},
		{"ipv6", wire6In, wire6Out},
		{"ipv6-existing-destopts", wire6DoIn, wire6DoOut},
	} {
		t.Run(v.name, func(t *testing.T) {
			in, want := unhex(t, v.in), unhex(t, v.out)
			if got := assemble(t, v.name, in); !bytes.Equal(got, want) {
				t.Errorf("independently assembled:\n got %x\nwant %x", got, want)
			}
			// AS 65001 tags what leaves for AS 65002.
			got, c := wireRun(t, wireASLow, 0, in, wireNow)
			if !bytes.Equal(got, want) || c.Actions[engine.ActTagged].Load() != 1 {
				t.Fatalf("engine tagged:\n got %x\nwant %x", got, want)
			}
			// AS 65002 validates and strips it: the packet comes back octet
			// for octet, in its own epoch e and when its clock is one epoch
			// ahead or behind (e−1 … e+1).
			for _, e := range []int64{wireEpoch, wireEpoch + 1, wireEpoch - 1} {
				back, c := wireRun(t, wireASHigh, 1, want, e*wirePeriod+30)
				if !bytes.Equal(back, in) || c.Actions[engine.ActValidated].Load() != 1 {
					t.Errorf("stripped in epoch %d:\n got %x\nwant %x", e, back, in)
				}
			}
			// Two epochs later the epoch octet matches none of e−1 … e+1.
			if back, c := wireRun(t, wireASHigh, 1, want, (wireEpoch+2)*wirePeriod); back != nil || c.Drops[engine.DropStaleEpoch].Load() != 1 {
				t.Error("a tag two epochs old was accepted")
			}
		})
	}
}

// TestWireDocument finds every vector of this file in docs/wire.md (hex
// there may be split by spaces and line breaks).
func TestWireDocument(t *testing.T) {
	doc, err := os.ReadFile("../docs/wire.md")
	if err != nil {
		t.Fatal(err)
	}
	flat := strings.Join(strings.Fields(string(doc)), "")
	for _, v := range []string{
		// the key schedule block, each value next to its label
		"S0=S(e0)" + wireS0, "exporterctx" + wireContext, "S(e0+1)" + wireS1,
		"K(e0)" + wireK0, "K(e0+1)" + wireK1, "k0=" + wireK1k0, "k1=" + wireK1k1,
		fmt.Sprintf("e0=%d", wireE0), fmt.Sprintf("unixtime%d→e=%d", wireNow, wireEpoch),
		fmt.Sprintf("epochoctet%#x", wireEpochOctet),
		// the tag table rows
		fmt.Sprintf("|%s|%s|%d|`%s`|", wireSrc4, wireDst4, wirePfx4, wireTag4),
		fmt.Sprintf("|%s|%s|%d|`%s`|", wireSrc6, wireDst6, wirePfx6, wireTag6),
		// the packets
		wire4In, wire4Out, wire6In, wire6Out, wire6DoIn, wire6DoOut,
	} {
		if !strings.Contains(flat, v) {
			t.Errorf("docs/wire.md does not show %s", v)
		}
	}
}
