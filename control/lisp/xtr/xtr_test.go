package xtr

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gaissmai/bart"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/ports"
)

var (
	key  = []byte("as65002-secret")
	t0   = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rloc = netip.MustParseAddr("192.0.2.2")
	pfx  = netip.MustParsePrefix
)

func etrDatabase() []Mapping {
	return []Mapping{
		{EID: pfx("203.0.113.0/24"), Locators: []Locator{{Addr: rloc, Priority: 1, Weight: 100}}},
		{EID: pfx("2001:db8:2::/48"), Locators: []Locator{{Addr: rloc, Priority: 1, Weight: 100}}},
	}
}

func newXTR(t testing.TB, cfg Config) *XTR {
	t.Helper()
	x, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// TestRegistrationSchedule: every 20 s for the first 5 minutes, then every
// 60 s; each Map-Register carries every database mapping with the AS
// Number LCAF, verifies with the key, asks for a Map-Notify, and has a
// larger nonce than the one before.
func TestRegistrationSchedule(t *testing.T) {
	ms := netip.MustParseAddrPort("198.51.100.1:4342")
	now := t0
	x := newXTR(t, Config{ASN: 65002, Database: etrDatabase(), Now: func() time.Time { return now },
		MapServers: []MapServer{{Addr: ms, Auth: lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: key}, WantNotify: true}}})
	var sent []time.Duration
	var last uint64
	for ; now.Before(t0.Add(8 * time.Minute)); now = now.Add(time.Second) {
		for _, o := range x.Tick(now) {
			if o.To != ms {
				t.Fatalf("sent to %v", o.To)
			}
			if err := lisp.Verify(o.Data, key); err != nil {
				t.Fatal(err)
			}
			r, err := lisp.ParseMapRegister(o.Data)
			if err != nil {
				t.Fatal(err)
			}
			if !r.WantMapNotify || len(r.Records) != 2 || r.Nonce <= last || r.KeyID != lisp.KeyIDHMACSHA256128 {
				t.Fatalf("Map-Register %+v", r)
			}
			last = r.Nonce
			for _, rec := range r.Records {
				if rec.EID.LCAF == nil || rec.EID.LCAF.Type != lisp.LCAFASNumber || rec.EID.LCAF.ASN != 65002 ||
					rec.Locators[0].Address.IP != rloc || rec.Locators[0].Priority != 1 || rec.Locators[0].Weight != 100 {
					t.Fatalf("record %+v", rec)
				}
			}
			sent = append(sent, now.Sub(t0))
			confirm(t, x, r, ms, now)
		}
	}
	if n := x.Stats().RegisterRetries; n != 0 {
		t.Fatalf("%d early retries although every Map-Register was confirmed", n)
	}
	var want []time.Duration
	for d := time.Duration(0); d < 5*time.Minute; d += 20 * time.Second {
		want = append(want, d)
	}
	for d := 5 * time.Minute; d < 8*time.Minute; d += time.Minute {
		want = append(want, d)
	}
	if len(sent) != len(want) {
		t.Fatalf("sent at %v, want %v", sent, want)
	}
	for i := range want {
		if sent[i] != want[i] {
			t.Fatalf("sent at %v, want %v", sent, want)
		}
	}
}

// itrFor returns an ITR whose misses come from the slice *misses and whose
// published map-caches land in *pub.
func itrFor(t testing.TB, misses *[]engine.Miss, pub **engine.MapCache, mod func(*Config)) *XTR {
	cfg := Config{
		RLOCs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, MapResolvers: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:4342")},
		Misses:  func(dst []engine.Miss) []engine.Miss { dst = append(dst, *misses...); *misses = nil; return dst },
		Publish: func(mc *engine.MapCache) { *pub = mc },
	}
	if mod != nil {
		mod(&cfg)
	}
	return newXTR(t, cfg)
}

func requestNonce(t testing.TB, o lisp.Datagram) uint64 {
	t.Helper()
	m, err := lisp.ParseECM(o.Data)
	if err != nil {
		t.Fatal(err)
	}
	return m.Message.(*lisp.MapRequest).Nonce
}

func replyFor(t testing.TB, nonce uint64, rec lisp.MappingRecord) []byte {
	b, err := lisp.Marshal(&lisp.MapReply{Nonce: nonce, Records: []lisp.MappingRecord{rec}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestITRNonceRetryExpiry: a reply with another nonce is ignored; requests
// are resent after the timeout and given up after the retries (then held
// down); an entry lives for its TTL; the rate caps requests per second.
func TestITRNonceRetryExpiry(t *testing.T) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := itrFor(t, &misses, &pub, nil)
	eid := netip.MustParseAddr("203.0.113.10")
	misses = []engine.Miss{{Addr: eid}, {Addr: eid}}
	out := x.Tick(t0)
	if len(out) != 1 {
		t.Fatalf("%d requests for one EID", len(out))
	}
	nonce := requestNonce(t, out[0])
	rec := lisp.MappingRecord{TTL: 1, EIDMaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("203.0.113.0")),
		Locators: []lisp.Locator{{Priority: 1, Weight: 1, Reachable: true, Address: lisp.IPAddr(rloc)}}}
	x.Handle(replyFor(t, nonce+1, rec), out[0].To, t0)
	if _, ok := x.Lookup(0, eid, t0); ok || x.Stats().BadNonce != 1 || pub != nil {
		t.Fatal("reply with a wrong nonce accepted")
	}
	if out = x.Tick(t0.Add(time.Second)); len(out) != 1 || requestNonce(t, out[0]) != nonce || x.Stats().Retries != 1 {
		t.Fatalf("no resend after the timeout: %d, %+v", len(out), x.Stats())
	}
	x.Handle(replyFor(t, nonce, rec), out[0].To, t0.Add(time.Second))
	e, ok := x.Lookup(0, eid, t0.Add(time.Second))
	if !ok || e.EID != pfx("203.0.113.0/24") || len(e.Locators) != 1 || e.Locators[0].Addr != rloc || pub == nil {
		t.Fatalf("entry %+v, published %v", e, pub != nil)
	}
	// A replayed reply (same nonce again) is no longer pending.
	x.Handle(replyFor(t, nonce, rec), out[0].To, t0.Add(time.Second))
	if x.Stats().BadNonce != 2 {
		t.Fatal("replayed reply accepted")
	}
	pub = nil
	x.Tick(t0.Add(61 * time.Second))
	if _, ok := x.Lookup(0, eid, t0.Add(61*time.Second)); ok || pub == nil || x.Stats().Expired != 1 {
		t.Fatal("entry outlived its 1-minute TTL")
	}

	// No answer: first send + 2 resends, then given up and held down.
	other := netip.MustParseAddr("2001:db8:2::10")
	misses = []engine.Miss{{Addr: other}}
	base := t0.Add(2 * time.Minute)
	sends := 0
	for i := 0; i < 5; i++ {
		sends += len(x.Tick(base.Add(time.Duration(i) * time.Second)))
	}
	if sends != 3 || x.Stats().GaveUp != 1 {
		t.Fatalf("%d sends, %+v", sends, x.Stats())
	}
	misses = []engine.Miss{{Addr: other}}
	if len(x.Tick(base.Add(6*time.Second))) != 0 || x.Stats().MissesDropped != 1 {
		t.Fatal("held-down EID asked for again")
	}
	misses = []engine.Miss{{Addr: other}}
	if len(x.Tick(base.Add(20*time.Second))) != 1 {
		t.Fatal("not asked for after the hold-down")
	}

	// Rate: 2 per second.
	x = itrFor(t, &misses, &pub, func(c *Config) { c.RequestsPerSecond = 2 })
	for i := range 5 {
		misses = append(misses, engine.Miss{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})})
	}
	if n := len(x.Tick(t0)); n != 2 || x.Stats().RateLimited != 3 {
		t.Fatalf("%d sent in one second, %+v", n, x.Stats())
	}
	if n := len(x.Tick(t0.Add(time.Second))); n != 2 {
		t.Fatalf("%d sent in the next second", n)
	}
}

// TestNegativeReply: a negative Map-Reply becomes a negative entry with its
// action.
func TestNegativeReply(t *testing.T) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := itrFor(t, &misses, &pub, nil)
	for _, c := range []struct {
		eid    string
		act    lisp.Action
		want   engine.MapAction
		cached bool
	}{{"10.0.0.1", lisp.ActionNativelyForward, engine.MapNativelyForward, true}, {"10.1.0.1", lisp.ActionDrop, engine.MapDrop, true}, {"10.2.0.1", lisp.ActionSendMapRequest, 0, false}} {
		a := netip.MustParseAddr(c.eid)
		misses = []engine.Miss{{Addr: a}}
		out := x.Tick(t0)
		x.Handle(replyFor(t, requestNonce(t, out[0]), lisp.MappingRecord{TTL: 1, EIDMaskLen: 16, Action: c.act, EID: lisp.IPAddr(a)}), out[0].To, t0)
		e, ok := x.Lookup(0, a, t0)
		if ok != c.cached || (ok && (len(e.Locators) != 0 || e.Action != c.want || e.EID.Bits() != 16)) {
			t.Fatalf("%s: entry %+v cached %v", c.eid, e, ok)
		}
	}
}

// TestETRAnswers: an Encapsulated Map-Request (as a Map-Server forwards it)
// for our EID is answered to the ITR-RLOC at the inner source port; others
// are not.
func TestETRAnswers(t *testing.T) {
	x := newXTR(t, Config{ASN: 65002, InstanceID: 7, Database: etrDatabase()})
	req := func(eid netip.Addr, iid uint32) []byte {
		b, err := lisp.Marshal(&lisp.ECM{
			Inner: lisp.InnerHeader{Source: netip.MustParseAddrPort("192.0.2.1:40000"), Destination: netip.AddrPortFrom(eid, 4342), TTL: 64},
			Message: &lisp.MapRequest{Nonce: 99, ITRRLOCs: []lisp.Address{lisp.IPAddr(netip.MustParseAddr("2001:db8:ff::1")), lisp.IPAddr(netip.MustParseAddr("192.0.2.1"))},
				Records: []lisp.EIDRecord{{MaskLen: 32, EID: lisp.InstanceIDAddr(iid, 0, lisp.IPAddr(eid))}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	out := x.Handle(req(netip.MustParseAddr("203.0.113.10"), 7), netip.MustParseAddrPort("198.51.100.1:4342"), t0)
	if len(out) != 1 || out[0].To != netip.MustParseAddrPort("192.0.2.1:40000") {
		t.Fatalf("answer %+v", out)
	}
	r, err := lisp.ParseMapReply(out[0].Data)
	if err != nil || r.Nonce != 99 || len(r.Records) != 1 || r.Records[0].EIDMaskLen != 24 || !r.Records[0].Authoritative {
		t.Fatalf("reply %+v %v", r, err)
	}
	if iid, ip, _ := unwrapEID(r.Records[0].EID); iid != 7 || ip != netip.MustParseAddr("203.0.113.0") {
		t.Fatalf("EID %v", r.Records[0].EID)
	}
	for _, c := range []struct {
		eid string
		iid uint32
	}{{"198.51.100.1", 7}, {"203.0.113.10", 8}} {
		if out := x.Handle(req(netip.MustParseAddr(c.eid), c.iid), netip.MustParseAddrPort("198.51.100.1:4342"), t0); len(out) != 0 {
			t.Fatalf("answered for %s in instance %d", c.eid, c.iid)
		}
	}
}

func listen(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// routedEngine is AS 65001's ITR data plane: port 0 inside, port 1 outside
// (encap lisp, RLOC 127.0.0.1), every route out by port 1.
func routedEngine(t testing.TB) *engine.Engine {
	// No AS-Prefix table here: the inside source is not "local", so the
	// policy forwards it (PSAV is not what this test is about).
	e, err := engine.New(engine.Spec{Forwarding: engine.Routed, Policy: engine.Policy{ForwardSpoofedInside: true}, Ports: []engine.PortSpec{
		{Name: "inside", Role: engine.RoleIngress, Peer: -1},
		{Name: "outside", Role: engine.RoleEgress, Peer: -1, Encap: engine.EncapLISP, RLOCs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tb := &engine.Tables{Period: 60, Hops: []engine.NextHop{{Port: 1}}}
	tb.Routes = new(bart.Fast[uint32])
	tb.Routes.Insert(pfx("0.0.0.0/0"), 0)
	tb.Routes.Insert(pfx("::/0"), 0)
	e.Publish(tb)
	return e
}

func frameTo(t testing.TB, dst netip.Addr) []byte {
	buf := gopacket.NewSerializeBuffer()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IP{198, 51, 100, 10}, DstIP: dst.AsSlice()}
	udp := &layers.UDP{SrcPort: 1000, DstPort: 2000}
	_ = udp.SetNetworkLayerForChecksum(ip)
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		ip, udp, gopacket.Payload("x"))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// send puts one frame through pr and returns the packet.
func send(pr *engine.Processor, e *engine.Engine, frame []byte) ports.Packet {
	b := ports.NewBatch(1)
	buf := make([]byte, ports.Headroom+ports.MaxFrame)
	b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: copy(buf[ports.Headroom:], frame)})
	pr.Process(b, e.Tables(), time.Now().Unix())
	return b.Pkts[0]
}

// TestLoopback: over loopback UDP, an ETR registers with the real
// Map-Server (Map-Notify acknowledged), an ITR fed by a real engine's miss
// queue resolves through it (the Map-Server forwards the ECM to the ETR,
// which answers the ITR), the engine then encapsulates towards the ETR's
// RLOC; an unregistered destination gets a negative entry and is forwarded
// natively.
func TestLoopback(t *testing.T) {
	msConn, etrConn, itrConn := listen(t), listen(t), listen(t)
	ms, err := mapserver.New(mapserver.Config{
		ControlPort: addrOf(etrConn).Port(), TickInterval: 20 * time.Millisecond,
		Sites: []mapserver.Site{{Name: "as65002", Key: key, KeyID: lisp.KeyIDHMACSHA256128, NotifyAck: true,
			EIDPrefixes: []mapserver.EIDPrefix{{Prefix: pfx("203.0.113.0/24")}, {Prefix: pfx("2001:db8:2::/48")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	etr := newXTR(t, Config{ASN: 65002, Database: etrDatabase(),
		MapServers: []MapServer{{Addr: addrOf(msConn), Auth: lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: key}, WantNotify: true, AckNotify: true}}})
	eng := routedEngine(t)
	itr := newXTR(t, Config{RLOCs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, MapResolvers: []netip.AddrPort{addrOf(msConn)},
		Misses: eng.Misses, Publish: eng.PublishMapCache})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, run := range []func() error{
		func() error { return ms.Serve(ctx, msConn) },
		func() error { return etr.Serve(ctx, etrConn) },
		func() error { return itr.Serve(ctx, itrConn) },
	} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run() }()
	}
	defer func() { cancel(); wg.Wait() }()

	waitFor(t, "registration", func() bool {
		r, ok := ms.Lookup(0, netip.MustParseAddr("203.0.113.10"), time.Now())
		return ok && r.ASN == 65002 && len(etr.Registered()) == 1 && ms.Stats().NotifyAcks > 0
	})

	pr := eng.NewProcessor(0)
	dst := netip.MustParseAddr("203.0.113.10")
	if p := send(pr, eng, frameTo(t, dst)); p.Out != ports.Drop || pr.Counters.Drops[engine.DropLISPMiss].Load() != 1 {
		t.Fatalf("first packet: out %d", p.Out)
	}
	waitFor(t, "map-cache entry", func() bool {
		_, ok := itr.Lookup(0, dst, time.Now())
		return ok
	})
	p := send(pr, eng, frameTo(t, dst))
	if p.Out != 1 || pr.Counters.LISP[engine.LISPEncapsulated].Load() != 1 {
		t.Fatalf("after the Map-Reply: out %d", p.Out)
	}
	if got := netip.AddrFrom4([4]byte(p.Frame()[30:34])); got != rloc {
		t.Fatalf("encapsulated to %v, want the ETR's RLOC %v", got, rloc)
	}
	if ms.Stats().Forwarded == 0 || etr.Stats().RequestsAnswered == 0 {
		t.Fatalf("not answered by the ETR: ms %+v etr %+v", ms.Stats(), etr.Stats())
	}

	other := netip.MustParseAddr("192.0.2.99")
	send(pr, eng, frameTo(t, other))
	waitFor(t, "negative entry", func() bool {
		e, ok := itr.Lookup(0, other, time.Now())
		return ok && len(e.Locators) == 0
	})
	if p := send(pr, eng, frameTo(t, other)); p.Out != 1 || pr.Counters.LISP[engine.LISPNative].Load() != 1 {
		t.Fatalf("negative entry: out %d", p.Out)
	}
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FuzzHandle: any datagram, from anywhere, never panics the xTR, and only
// a reply to an outstanding request changes the map-cache.
func FuzzHandle(f *testing.F) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := itrFor(f, &misses, &pub, func(c *Config) {
		c.ASN, c.Database = 65002, etrDatabase()
		c.MapServers = []MapServer{{Addr: netip.MustParseAddrPort("198.51.100.1:4342"), Auth: lisp.AuthConfig{KeyID: 1, Key: key}, AckNotify: true}}
		c.ProbeInterval = time.Second
	})
	rec := lisp.MappingRecord{TTL: 1, EIDMaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("203.0.113.0")),
		Locators: []lisp.Locator{{Priority: 1, Weight: 1, Reachable: true, Address: lisp.IPAddr(rloc)}}}
	f.Add(replyFor(f, 1, rec))
	// A probe reply, an SMR, an SMR-invoked request (issue 16).
	for _, m := range []lisp.Message{
		&lisp.MapReply{Probe: true, Nonce: 2, Records: []lisp.MappingRecord{rec}},
		&lisp.MapRequest{SMR: true, Nonce: 3, SourceEID: lisp.IPAddr(netip.MustParseAddr("10.9.1.0")), ITRRLOCs: []lisp.Address{lisp.IPAddr(rloc)},
			Records: []lisp.EIDRecord{{MaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("203.0.113.0"))}}},
		&lisp.MapRequest{SMRInvoked: true, Nonce: 4, ITRRLOCs: []lisp.Address{lisp.IPAddr(rloc)},
			Records: []lisp.EIDRecord{{MaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("203.0.113.0"))}}},
	} {
		b, err := lisp.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, o := range x.Tick(t0) {
		f.Add(o.Data)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		x.Handle(b, netip.MustParseAddrPort("198.51.100.1:4342"), t0)
		if pub != nil {
			t.Fatal("map-cache changed with no request outstanding")
		}
	})
}

// confirm answers Map-Register r as the Map-Server ms would: a Map-Notify
// with its nonce and records, authenticated with the site key.
func confirm(t *testing.T, x *XTR, r *lisp.MapRegister, ms netip.AddrPort, now time.Time) {
	t.Helper()
	b, err := lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: key}.Marshal(&lisp.MapNotify{Nonce: r.Nonce, Records: r.Records})
	if err != nil {
		t.Fatal(err)
	}
	x.Handle(b, ms, now)
}

// TestRegistrationRetry: a Map-Server that does not confirm (not up yet,
// or the message lost) gets the registration again 1, 2, 4, 8, 16 s after
// the last one (capped at the interval, 20 s), besides the schedule; once
// it confirms, the plain schedule goes on.
func TestRegistrationRetry(t *testing.T) {
	ms := netip.MustParseAddrPort("198.51.100.1:4342")
	now := t0
	x := newXTR(t, Config{ASN: 65002, Database: etrDatabase(), Now: func() time.Time { return now },
		MapServers: []MapServer{{Addr: ms, Auth: lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA256128, Key: key}, WantNotify: true}}})
	var sent []time.Duration
	for ; now.Before(t0.Add(2 * time.Minute)); now = now.Add(time.Second) {
		for _, o := range x.Tick(now) {
			sent = append(sent, now.Sub(t0))
			if now.Sub(t0) >= 40*time.Second { // the Map-Server is up from 40 s on
				r, err := lisp.ParseMapRegister(o.Data)
				if err != nil {
					t.Fatal(err)
				}
				confirm(t, x, r, ms, now)
			}
		}
	}
	want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second,
		20 * time.Second, 36 * time.Second, 40 * time.Second, 60 * time.Second, 80 * time.Second, 100 * time.Second}
	if fmt.Sprint(sent) != fmt.Sprint(want) {
		t.Fatalf("sent at %v, want %v", sent, want)
	}
}
