package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/internal/netlab"
)

// TestOORxTRWithPsavdMapServer (issue 16, must-show 1): OOR as an xTR
// registers 10.9.1.0/24 with psavd's Map-Server (HMAC-SHA-1, 20 octets,
// random nonces, M bit) and keeps the registration for more than four
// minutes: every Map-Register it sends is answered by a Map-Notify that OOR
// accepts ("confirms correct registration"), none is refused, the
// registration never expires. OOR's ITR, asked for 10.9.2.1, gets psavd's
// Map-Resolver's proxy Map-Reply for 10.9.2.0/24 (registered with the P bit
// by a Go ETR using psavd's codec) and installs it in its map-cache.
func TestOORxTRWithPsavdMapServer(t *testing.T) {
	p := newOORPair(t)
	bin := psavdBinary(t)
	const metricsAt = "127.0.0.1:9116"
	cfg := fmt.Sprintf(`[metrics]
listen = %q
[lisp]
rlocs = [%q]
[lisp.map_server]
listen = "%s:4342"
[[lisp.site]]
name = "oor"
key = "oor-secret"
key_id = 1
eid_prefixes = ["10.9.1.0/24"]
[[lisp.site]]
name = "other"
key = "other-secret"
key_id = 1
eid_prefixes = ["10.9.2.0/24"]
`, metricsAt, oorPsavdAddr, oorPsavdAddr)
	path := filepath.Join(p.dir, "ms.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startPsavd(t, bin, p.psavdNS, path, true)

	// 10.9.2.0/24, proxy-reply, registered once (it lives 3 minutes; it is
	// asked for at once).
	reg, err := lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA1_96, Key: []byte("other-secret"), AuthLen: 20}.Marshal(&lisp.MapRegister{
		ProxyReply: true, Nonce: 1, Records: []lisp.MappingRecord{{TTL: 10, EIDMaskLen: 24, Authoritative: true,
			EID: lisp.IPAddr(netip.MustParseAddr("10.9.2.0")), Locators: []lisp.Locator{{Priority: 1, Weight: 100, MPriority: 255, Reachable: true,
				Address: lisp.IPAddr(netip.MustParseAddr("192.0.2.99"))}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := netlab.Do(p.psavdNS, func() error {
		c, err := net.Dial("udp", oorPsavdAddr+":4342")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(reg)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	o := p.startOOR(t, "xtr", oorConf(
		"debug = 2", "operating-mode = xTR", "encapsulation = LISP",
		fmt.Sprintf("map-resolver = { %s }", oorPsavdAddr),
		fmt.Sprintf("map-server {\n address = %s\n key-type = 1\n key = oor-secret\n proxy-reply = off\n}", oorPsavdAddr),
		"database-mapping {\n eid-prefix = 10.9.1.0/24\n iid = 0\n ttl = 10\n rloc-iface {\n  interface = rloc\n  ip_version = 4\n  priority = 1\n  weight = 100\n }\n}",
	))
	const confirmed = "Map-Notify message confirms correct registration of 10.9.1.0/24"
	if err := o.Wait(60*time.Second, func() bool { return o.Count(confirmed) >= 1 }); err != nil {
		t.Fatalf("OOR's first registration not confirmed: %v", err)
	}

	// OOR's ITR: traffic from its EID to 10.9.2.1 misses its map-cache.
	added := "Added Map Cache entry with EID prefix 10.9.2.0/24"
	if err := o.Wait(60*time.Second, func() bool {
		_ = netlab.Do(p.oorNS, func() error {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(oorEIDHost)}, &net.UDPAddr{IP: net.ParseIP("10.9.2.1"), Port: 9})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("to the ITR"))
			return err
		})
		time.Sleep(time.Second)
		return o.Count(added) >= 1
	}); err != nil {
		t.Fatalf("OOR did not install psavd's Map-Reply for 10.9.2.0/24: %v", err)
	}
	if v := metric(t, p.psavdNS, metricsAt, "psavd_lisp_map_server_events_total", map[string]string{"event": "proxy-reply"}); v < 1 {
		t.Fatalf("psavd sent %v proxy Map-Replies", v)
	}

	// Held for four refresh intervals (60 s each) past the first.
	if err := o.Wait(6*time.Minute, func() bool { return o.Count(confirmed) >= 5 }); err != nil {
		t.Fatalf("%d confirmations: %v", o.Count(confirmed), err)
	}
	ms := func(name, label, value string) float64 {
		return metric(t, p.psavdNS, metricsAt, name, map[string]string{label: value})
	}
	if v := metric(t, p.psavdNS, metricsAt, "psavd_lisp_map_server_refused_total", nil); v != 0 {
		t.Fatalf("psavd refused %v messages", v)
	}
	// Only the Go ETR's single registration (never refreshed) has expired
	// by now; OOR's never did.
	if v := ms("psavd_lisp_map_server_events_total", "event", "expiration"); v != 1 {
		t.Fatalf("%v registrations expired, want 1 (the unrefreshed 10.9.2.0/24)", v)
	}
	regs := ms("psavd_lisp_map_server_events_total", "event", "registration") + ms("psavd_lisp_map_server_events_total", "event", "refresh")
	sent := ms("psavd_lisp_map_server_notifies_total", "event", "sent")
	// Every accepted Map-Register with the M bit got a Map-Notify (the Go
	// ETR's registration asked for none), and OOR never had to retry.
	if regs-1 != sent || sent < 5 {
		t.Fatalf("%v Map-Registers accepted, %v Map-Notifies sent", regs, sent)
	}
	if n := strings.Count(o.Log(), "did not receive reply"); n != 0 {
		t.Fatalf("OOR retried %d Map-Registers", n)
	}
	if v := metric(t, p.psavdNS, metricsAt, "psavd_lisp_map_server_registrations", nil); v < 1 {
		t.Fatal("OOR's registration is not held")
	}
}

// TestPsavdETRWithOORMapServer (issue 16, must-show 2, first half): psavd's
// ETR registers 10.8.0.0/24 with OOR's Map-Server (HMAC-SHA-1, 20 octets,
// no AS Number LCAF): OOR accepts it and psavd takes OOR's Map-Notify; an
// Encapsulated Map-Request for 10.8.0.5 sent to OOR is forwarded to psavd's
// ETR, whose Map-Reply names psavd's RLOC.
func TestPsavdETRWithOORMapServer(t *testing.T) {
	p := newOORPair(t)
	bin := psavdBinary(t)
	o := p.startOOR(t, "ms", oorConf(
		"debug = 2", "operating-mode = MS", "control-iface = rloc",
		"lisp-site {\n eid-prefix = 10.8.0.0/24\n key-type = 1\n key = oor-ms-secret\n iid = 0\n accept-more-specifics = false\n proxy-reply = false\n}",
	))
	if err := o.Wait(30*time.Second, func() bool { return strings.Contains(o.Log(), "started") }); err != nil {
		t.Fatalf("OOR Map-Server not started: %v", err)
	}
	const metricsAt = "127.0.0.1:9117"
	cfg := fmt.Sprintf(`[metrics]
listen = %q
[lisp]
rlocs = [%q]
control_listen = "%s:4342"
[[lisp.database]]
eid = "10.8.0.0/24"
rlocs = [{ address = %q, priority = 1, weight = 100 }]
[[lisp.register_to]]
address = %q
key = "oor-ms-secret"
key_id = 1
want_notify = true
as_number_lcaf = false
`, metricsAt, oorPsavdAddr, oorPsavdAddr, oorPsavdAddr, oorRLOC)
	path := filepath.Join(p.dir, "etr.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	startPsavd(t, bin, p.psavdNS, path, true)
	etr := func(event string) float64 {
		return metric(t, p.psavdNS, metricsAt, "psavd_lisp_xtr_etr_total", map[string]string{"event": event})
	}
	deadline := time.Now().Add(60 * time.Second)
	for etr("notify") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no Map-Notify from OOR taken (registers %v, refused %v)", etr("register"), etr("notify-refused"))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if v := etr("notify-refused"); v != 0 {
		t.Fatalf("%v Map-Notifies from OOR refused", v)
	}

	var reply *lisp.MapReply
	err := netlab.Do(p.psavdNS, func() error {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(oorPsavdAddr)})
		if err != nil {
			return err
		}
		defer c.Close()
		me := c.LocalAddr().(*net.UDPAddr).AddrPort()
		req, err := lisp.Marshal(&lisp.ECM{
			Inner: lisp.InnerHeader{Source: me, Destination: netip.MustParseAddrPort("10.8.0.5:4342"), TTL: 64},
			Message: &lisp.MapRequest{Nonce: 0x5eed, ITRRLOCs: []lisp.Address{lisp.IPAddr(me.Addr())},
				Records: []lisp.EIDRecord{{MaskLen: 32, EID: lisp.IPAddr(netip.MustParseAddr("10.8.0.5"))}}},
		})
		if err != nil {
			return err
		}
		buf := make([]byte, 2048)
		for range 10 {
			if _, err := c.WriteToUDPAddrPort(req, netip.AddrPortFrom(netip.MustParseAddr(oorRLOC), 4342)); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				continue
			}
			m, err := lisp.Parse(buf[:n])
			if err != nil {
				return fmt.Errorf("answer does not decode: %v", err)
			}
			if r, ok := m.(*lisp.MapReply); ok && r.Nonce == 0x5eed {
				reply = r
				return nil
			}
		}
		return fmt.Errorf("no Map-Reply")
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(reply.Records) != 1 || len(reply.Records[0].Locators) != 1 || reply.Records[0].Locators[0].Address.IP != netip.MustParseAddr(oorPsavdAddr) {
		t.Fatalf("Map-Reply %+v, want one record with locator %s", reply, oorPsavdAddr)
	}
	if v := etr("request-answered"); v < 1 {
		t.Fatalf("psavd's ETR answered %v Map-Requests", v)
	}
}

// TestPsavdITRWithOORMapResolver (issue 16, must-show 2, second half):
// OOR's xTR registers 10.9.1.0/24 and 2001:db8:9:1::/64 with OOR's
// Map-Server; psavd's xTR (AF_XDP), whose Map-Resolver is OOR's, gets a
// packet from its site for 10.9.1.10 (then 2001:db8:9:1::10): the engine
// misses, the ITR sends an Encapsulated Map-Request to OOR's
// Map-Resolver, which hands it to OOR's ETR (IPv4; the ETR's Map-Reply)
// or answers it itself (IPv6, a site OOR's Map-Server proxy-replies for:
// a non-authoritative Map-Reply). psavd installs the answer — the prefix
// → 10.77.0.2, priority 1, weight 100, up, in psavctl map-cache — and the
// next packets reach the host behind OOR, encapsulated by psavd and
// decapsulated by OOR.
func TestPsavdITRWithOORMapResolver(t *testing.T) {
	l := newOORLab(t)
	ms := l.startMapServer(t)
	l.startOORxTR(t)
	sock, metricsAt := l.startPsavdxTR(t)
	cached := func(eids netip.Prefix) map[string]any {
		for _, e := range psavctlJSON(t, sock, "map-cache")["entries"].([]any) {
			e := e.(map[string]any)
			if p, err := netip.ParsePrefix(e["eid"].(string)); err == nil && p.Overlaps(eids) {
				return e
			}
		}
		return nil
	}
	for i, c := range []struct {
		eids, host string
		proxy      bool // answered by OOR's Map-Server, not its ETR
	}{{oorLabOOREIDs, oorLabOORHost, false}, {oorLabOOREIDs6, oorLabOORHost6, true}} {
		eids := netip.MustParsePrefix(c.eids)
		if e := cached(eids); e != nil {
			t.Fatalf("map-cache holds %v before any traffic", e)
		}
		dst := netip.AddrPortFrom(netip.MustParseAddr(c.host), 4242).String()
		deliver(t, l.psavdHost, dst, "itr-via-oor-mr", 64, newUDPSink(t, l.oorHost, dst))

		e := cached(eids)
		if e == nil {
			t.Fatalf("no map-cache entry for %s:\n%s", c.eids, psavctl(t, sock, "map-cache"))
		}
		locs, _ := e["locators"].([]any)
		if e["eid"] != c.eids || e["negative"] == true || len(locs) != 1 {
			t.Fatalf("map-cache entry %v, want %s with one locator", e, c.eids)
		}
		loc := locs[0].(map[string]any)
		if loc["address"] != oorRLOC || loc["up"] != true || loc["priority"] != float64(1) || loc["weight"] != float64(100) {
			t.Fatalf("%s: locator %v, want %s up, priority 1, weight 100 (OOR's database-mapping)", c.eids, loc, oorRLOC)
		}
		if proxied := ms.Count("belongs to the registered prefix " + c.eids + ". Send Map Reply"); (proxied > 0) != c.proxy {
			t.Fatalf("%s: OOR's Map-Server proxy-replied %d times, want proxy replies %v", c.eids, proxied, c.proxy)
		}
		itr := func(event string) float64 {
			return metric(t, l.psavdNS, metricsAt, "psavd_lisp_xtr_itr_total", map[string]string{"event": event})
		}
		// A reply to a resent request (same nonce) after the first one was
		// taken is a bad nonce; nothing else may be.
		if itr("request") < float64(i+1) || itr("reply") < float64(i+1) || itr("overclaim") != 0 || itr("negative") != 0 || itr("bad-nonce") > itr("retry") {
			t.Fatalf("ITR after %s: requests %v, replies %v, overclaims %v, negative %v, bad nonces %v", c.eids,
				itr("request"), itr("reply"), itr("overclaim"), itr("negative"), itr("bad-nonce"))
		}
	}
	c, err := lab.Scrape(context.Background(), l.psavdNS, metricsAt)
	if err != nil {
		t.Fatal(err)
	}
	if c.Total("drops", "lisp-miss") < 2 {
		t.Errorf("want a lisp-miss drop before each Map-Reply: %v", c)
	}
	t.Logf("psavd's map-cache:\n%s", psavctl(t, sock, "map-cache"))
}

// TestOORxTRDataWithPsavdxTR (issue 16, must-show 3): LISP data both ways
// between OOR's xTR (tun data plane) and psavd's xTR (AF_XDP), each having
// resolved the other's EID prefix through OOR's Map-Resolver (psavd's ETR
// registered with OOR's Map-Server). UDP datagrams of 64 and 1200 octets,
// IPv4 and IPv6 (IPv6-in-IPv4), ph → oh and oh → ph: the packet each host
// receives is the one the other host sent, octet for octet, except the
// TTL / hop limit and (IPv4) the header checksum, which only the TTL
// changes; nothing is tagged (neither site is another PSAV member), and
// the UDP checksum, untouched, is accepted by the receiving socket. The
// TTL is two lower: psavd's
// routed hop decrements it, and OOR's kernel forwards between lispTun0
// and the EID link (the encapsulating side copies the inner TTL to the
// outer header, the decapsulating side takes the outer TTL back, RFC 9300
// §5.3, so the underlay adds no hop). tshark then decodes every LISP
// packet on psavd's underlay link, control and data, psavd's and OOR's,
// without a malformed or expert mark.
func TestOORxTRDataWithPsavdxTR(t *testing.T) {
	l := newOORLab(t)
	l.startMapServer(t)
	oor := l.startOORxTR(t)
	// psavd's underlay link from before its first Map-Register.
	underlay, err := lab.Sniff(l.ulNS, "p1")
	if err != nil {
		t.Fatal(err)
	}
	defer underlay.Close()
	_, metricsAt := l.startPsavdxTR(t)
	atPh, err := lab.Sniff(l.psavdHost, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer atPh.Close()
	atOh, err := lab.Sniff(l.oorHost, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	defer atOh.Close()
	hostPort := func(a string) string { return netip.AddrPortFrom(netip.MustParseAddr(a), 4242).String() }
	toOh, toOh6 := newUDPSink(t, l.oorHost, hostPort(oorLabOORHost)), newUDPSink(t, l.oorHost, hostPort(oorLabOORHost6))
	toPh, toPh6 := newUDPSink(t, l.psavdHost, hostPort(oorLabPsavdHost)), newUDPSink(t, l.psavdHost, hostPort(oorLabPsavdHost6))

	ctx := context.Background()
	for _, c := range []struct {
		name         string
		from         string // host namespace
		atFrom, atTo *lab.Sniffer
		dst          string
		sink         *udpSink
	}{
		{"psavd-to-oor", l.psavdHost, atPh, atOh, hostPort(oorLabOORHost), toOh},
		{"oor-to-psavd", l.oorHost, atOh, atPh, hostPort(oorLabPsavdHost), toPh},
		{"psavd-to-oor-ipv6", l.psavdHost, atPh, atOh, hostPort(oorLabOORHost6), toOh6},
		{"oor-to-psavd-ipv6", l.oorHost, atOh, atPh, hostPort(oorLabPsavdHost6), toPh6},
	} {
		for _, size := range []int{64, 1200} {
			payload := deliver(t, c.from, c.dst, fmt.Sprintf("%s-%d", c.name, size), size, c.sink)
			// A sniffer may report its copy after the socket got it.
			c.atFrom.Wait(ctx, 5*time.Second, func([]lab.Captured) bool { return frameWith(c.atFrom, payload, true) != nil })
			c.atTo.Wait(ctx, 5*time.Second, func([]lab.Captured) bool { return frameWith(c.atTo, payload, false) != nil })
			sent, got := ipPacket(frameWith(c.atFrom, payload, true)), ipPacket(frameWith(c.atTo, payload, false))
			if sent == nil || got == nil {
				t.Fatalf("%s, %d octets: sent or delivered packet not captured", c.name, size)
			}
			if hopCount(got) != hopCount(sent)-2 || !bytes.Equal(normalised(got, 0), normalised(sent, 0)) {
				t.Fatalf("%s, %d octets: delivered packet differs from the sent one (but for two hops):\n sent %x\n  got %x", c.name, size, sent, got)
			}
			t.Logf("%s: %d-octet IPv%d packet delivered identical but for TTL %d → %d", c.name, len(sent), sent[0]>>4, hopCount(sent), hopCount(got))
		}
	}
	cs, err := lab.Scrape(ctx, l.psavdNS, metricsAt)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Total("packets", "lisp-encapsulated") < 4 || cs.Total("packets", "lisp-decapsulated") < 4 {
		t.Errorf("psavd encapsulated %v and decapsulated %v packets, want ≥ 4 each: %v", cs.Total("packets", "lisp-encapsulated"), cs.Total("packets", "lisp-decapsulated"), cs)
	}
	for _, eids := range []string{oorLabPsavdEIDs, oorLabPsavdEIDs6} {
		if n := oor.Count("Added Map Cache entry with EID prefix " + eids); n < 1 {
			t.Errorf("OOR's log does not show its map-cache entry for %s", eids)
		}
	}
	checkLISPWithTshark(t, l.dir, underlay.Frames())
}
