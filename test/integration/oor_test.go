package integration

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
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
