package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/decent/pull"
	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/psavref"
	"github.com/psavd/psavd/internal/testpki"
)

// TestDecentEndToEndPush and TestDecentEndToEndPull (issue 6, must-show
// 4): PSAV-tagged traffic between three ASes whose mappings come only from
// LISP-Decent — no [[lisp.register_to]], no [[lisp.map_resolver]], no
// static map-cache.
//
//	h1 ─ abr1 (AS 65001) ─┐
//	h2 ─ abr2 (AS 65002) ─┼─ br0 (transit LAN, namespace "dsw")
//	h3 ─ abr3 (AS 65003) ─┘
//
// Each ABR is a routed psavd on AF_XDP (ports "inside" and "outside",
// encap = "lisp", RLOC 10.0.0.i on the transit), PSAV keys static per AS
// pair, its ETR registering its AS's EID prefix (AS Number LCAF).
//
// Push: the ABRs' RLOCs form registration group 239.77.0.1 by IP multicast
// on the transit LAN; each ETR registers with every member of the group's
// RLE, each ITR asks its own push node. The test waits until all three
// hold the same registration set (same digest at /metrics), then h1 sends
// to h2 and h3: abr1 misses, its ITR's Map-Request is answered by its own
// node, abr1 tags and encapsulates, the ETR decapsulates, validates,
// strips and delivers the packet octet for octet but the TTL.
//
// Pull: abr1 also serves the zone map.decent.test over DoT ([adot.server]
// on 10.0.0.53:853, certificate made by the test); <index>.map.decent.test
// names two of the three ABRs' Map-Servers (10.0.0.1i, [lisp.map_server]
// behind the ownership check of lisp.decent.owned); draft hashing, modulus
// 4, mask 8 (so a host's /32 hashes where its AS's /24 was registered).
// Same traffic; no ownership mismatch anywhere.
//
// In both, a LISP packet from the transit LAN whose inner source is h1's
// but untagged is dropped no-tag at abr2 and never reaches h2.
func TestDecentEndToEndPush(t *testing.T) { decentEndToEnd(t, "push", "multicast") }

// TestDecentEndToEndPushUnicast is the push case with unicast replication
// (issue 16): each member's Map-Registers reach the others LISP-encapsulated
// to their RLOC on UDP 4341 with instance-ID 0xffffff, the LISP data port of
// their AF_XDP data plane, whose XDP program hands exactly those to the
// kernel and so to the push node's data socket (before, the engine took
// them as data and the group never converged).
func TestDecentEndToEndPushUnicast(t *testing.T) { decentEndToEnd(t, "push", "unicast") }

func TestDecentEndToEndPull(t *testing.T) { decentEndToEnd(t, "pull", "") }

type decentAS struct {
	asn             uint32
	prefix, host    string // EID prefix, h's address
	abrIn, hMAC     string // ABR inside address, h's MAC
	inMAC, outMAC   string // ABR MACs
	rloc, mapServer string // transit addresses: RLOC, pull Map-Server
	ns, hns         string
	hsniff          *lab.Sniffer
}

func decentEndToEnd(t *testing.T, mode, transport string) {
	skipUnlessLab(t)
	bin := psavdBinary(t)
	topo, must := newTopology(t)
	ases := []*decentAS{
		{asn: 65001, prefix: "198.51.100.0/24", host: "198.51.100.10", abrIn: "198.51.100.1"},
		{asn: 65002, prefix: "203.0.113.0/24", host: "203.0.113.10", abrIn: "203.0.113.1"},
		{asn: 65003, prefix: "192.0.2.0/24", host: "192.0.2.10", abrIn: "192.0.2.1"},
	}
	sw, err := topo.NS("dsw")
	must(err)
	must(netlab.IP("-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"))
	must(netlab.IP("-n", sw, "link", "set", "br0", "up"))
	must(netlab.IP("-n", sw, "addr", "add", "10.0.0.254/24", "dev", "br0"))
	for i, a := range ases {
		n := i + 1
		a.hMAC, a.inMAC, a.outMAC = fmt.Sprintf("02:00:00:06:%02d:10", n), fmt.Sprintf("02:00:00:06:%02d:01", n), fmt.Sprintf("02:00:00:06:%02d:02", n)
		a.rloc, a.mapServer = fmt.Sprintf("10.0.0.%d", n), fmt.Sprintf("10.0.0.1%d", n)
		a.ns, err = topo.NS(fmt.Sprintf("dabr%d", n))
		must(err)
		a.hns, err = topo.NS(fmt.Sprintf("dh%d", n))
		must(err)
		port := fmt.Sprintf("p%d", n)
		must(topo.Veth(a.hns, "eth0", a.hMAC, a.ns, "in", a.inMAC))
		must(topo.Veth(a.ns, "out", a.outMAC, sw, port, ""))
		must(netlab.IP("-n", sw, "link", "set", port, "master", "br0"))
		must(netlab.IP("-n", a.hns, "addr", "add", a.host+"/24", "dev", "eth0"))
		must(netlab.IP("-n", a.hns, "route", "add", "default", "via", a.abrIn))
		must(netlab.IP("-n", a.ns, "addr", "add", a.abrIn+"/24", "dev", "in"))
		must(netlab.IP("-n", a.ns, "addr", "add", a.rloc+"/24", "dev", "out"))
		must(netlab.IP("-n", a.ns, "addr", "add", a.mapServer+"/24", "dev", "out"))
		// Kernels send full checksums (an AF_XDP copy would carry a
		// partial one into the delivered packet).
		for _, x := range [][2]string{{a.hns, "eth0"}, {a.ns, "out"}} {
			if _, err := netlab.Exec(x[0], "ethtool", "-K", x[1], "tx", "off"); err != nil {
				t.Skipf("ethtool: %v", err)
			}
		}
	}
	const dnsAddr = "10.0.0.53"
	must(netlab.IP("-n", ases[0].ns, "addr", "add", dnsAddr+"/24", "dev", "out"))

	dir := t.TempDir()
	var common strings.Builder
	for _, a := range ases {
		common.WriteString(memberTOML(a.asn, a.prefix))
	}
	common.WriteString(routedLISPPorts + metricsTOML("127.0.0.1:9100"))
	epoch := time.Now().Unix()/60 - 1
	var sites strings.Builder
	for _, a := range ases {
		fmt.Fprintf(&sites, "[[lisp.site]]\nname = \"as%d\"\nkey = \"decent-e2e-%d\"\nkey_id = 2\neid_prefixes = [%q]\naccept_more_specifics = true\n",
			a.asn, a.asn, a.prefix)
	}
	// Pull: the zone names two of the three Map-Servers per index.
	const suffix, modulus, mask = "map.decent.test", 4, 8
	var msAddrs []netip.Addr
	for _, a := range ases {
		msAddrs = append(msAddrs, netip.MustParseAddr(a.mapServer))
	}
	owners := pull.IndexOwners(modulus, 2, msAddrs)
	var pki *testpki.ServerPKI
	if mode == "pull" {
		pki, err = testpki.NewServerPKI(dir, "dns.decent.test")
		must(err)
		for _, a := range ases {
			i, err := pull.Index(pull.ModeDraft, pull.EIDString(0, netip.MustParsePrefix(a.prefix)), mask, modulus)
			must(err)
			t.Logf("AS %d: %s hashes to %d.%s → %v", a.asn, a.prefix, i, suffix, owners[i])
		}
	}
	cfgs := map[*decentAS]string{}
	for _, a := range ases {
		var b strings.Builder
		b.WriteString(psavTOML(a.asn))
		for _, p := range ases {
			if p != a {
				b.WriteString(staticPeerTOML(p.asn, epoch))
			}
		}
		b.WriteString(common.String())
		b.WriteString(routeTOML(a.prefix, "inside", a.hMAC))
		for _, p := range ases {
			if p != a { // the outer header's next hop: the other ABR itself
				b.WriteString(routeTOML(p.rloc+"/32", "outside", p.outMAC))
			}
		}
		b.WriteString(routeTOML("0.0.0.0/0", "outside", ases[1].outMAC))
		fmt.Fprintf(&b, "[lisp]\nrlocs = [%q]\n", a.rloc)
		if mode == "push" {
			fmt.Fprintf(&b, "control_listen = \"%s:4343\"\n", a.rloc)
		} else {
			fmt.Fprintf(&b, "control_listen = \"%s:4342\"\n[lisp.map_server]\nlisten = \"%s:4342\"\n", a.rloc, a.mapServer)
		}
		b.WriteString(sites.String())
		fmt.Fprintf(&b, "[[lisp.database]]\neid = %q\nrlocs = [{ address = %q, priority = 1, weight = 100 }]\n", a.prefix, a.rloc)
		fmt.Fprintf(&b, "[lisp.decent]\nmode = %q\nsite = \"as%d\"\n", mode, a.asn)
		if mode == "push" {
			b.WriteString("group = \"239.77.0.1\"\nmembership_key = \"decent-e2e-group\"\nmembership_key_id = 2\n")
			if transport == "multicast" {
				b.WriteString("transport = \"multicast\"\ninterface = \"out\"\n")
			} else { // the other members' RLOCs, on the default data port 4341
				var members []string
				for _, p := range ases {
					if p != a {
						members = append(members, fmt.Sprintf("%q", p.rloc))
					}
				}
				fmt.Fprintf(&b, "transport = \"unicast\"\nmembers = [%s]\n", strings.Join(members, ", "))
			}
		} else {
			var owned []string
			for i := uint64(0); i < modulus; i++ {
				for _, o := range owners[i] {
					if o.String() == a.mapServer {
						owned = append(owned, fmt.Sprint(i))
					}
				}
			}
			fmt.Fprintf(&b, "suffix = %q\nmodulus = %d\nhash_mode = \"draft\"\nhash_mask = %d\nowned = [%s]\n", suffix, modulus, mask, strings.Join(owned, ", "))
			fmt.Fprintf(&b, "[adot]\nservers = [\"%s:853\"]\nserver_name = \"dns.decent.test\"\nca = %q\n", dnsAddr, pki.CAFile)
			if a == ases[0] {
				fmt.Fprintf(&b, "[adot.server]\nlisten = \"%s:853\"\ncert = %q\nkey = %q\nzone = %q\nttl = 30\n[adot.server.records]\n\"@\" = [\"NS dns.decent.test.\"]\n",
					dnsAddr, pki.CertFile, pki.KeyFile, suffix)
				for i := uint64(0); i < modulus; i++ {
					var rr []string
					for _, o := range owners[i] {
						rr = append(rr, fmt.Sprintf("%q", "A "+o.String()))
					}
					fmt.Fprintf(&b, "\"%d\" = [%s]\n", i, strings.Join(rr, ", "))
				}
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("abr%d.toml", a.asn))
		must(os.WriteFile(p, []byte(b.String()), 0o644))
		cfgs[a] = p
		for _, bad := range []string{"register_to", "map_resolver", "map_cache"} {
			if strings.Contains(b.String(), bad) {
				t.Fatalf("%s: static %s in a Decent-only configuration", p, bad)
			}
		}
	}

	for _, a := range ases {
		a.hsniff, err = lab.Sniff(a.hns, "eth0")
		must(err)
		defer a.hsniff.Close()
	}
	// abr1's side of the transit: what it sends encapsulated.
	at1out, err := lab.Sniff(sw, "p1")
	must(err)
	defer at1out.Close()

	// Each ABR's side of the transit, from before the start: Map-Notifies.
	toABR := map[*decentAS]*lab.Sniffer{}
	for i, a := range ases {
		s, err := lab.Sniff(sw, fmt.Sprintf("p%d", i+1))
		must(err)
		defer s.Close()
		toABR[a] = s
	}
	for _, a := range ases { // abr1 first: in pull mode it serves the zone
		startPsavd(t, bin, a.ns, cfgs[a], true)
	}
	ctx := context.Background()

	// The mapping system has converged before traffic (asked before, a
	// Map-Resolver rightly answers with a negative entry).
	deadline := time.Now().Add(60 * time.Second)
	if mode == "push" {
		for {
			var digests []string
			ok := true
			for _, a := range ases {
				m := rawMetrics(t, a.ns, "127.0.0.1:9100")
				if metricValue(t, m, "psavd_decent_push_registrations") != 3 || metricValue(t, m, "psavd_decent_push_members") != 3 {
					ok = false
				}
				digests = append(digests, digestOf(m))
			}
			if ok && digests[0] != "" && digests[0] == digests[1] && digests[1] == digests[2] {
				t.Logf("push group converged: 3 members, 3 registrations each, digest %s", digests[0])
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("push group did not converge within 60 s (digests %v)", digests)
			}
			time.Sleep(200 * time.Millisecond)
		}
	} else {
		// Every ETR has had a Map-Notify from a remote Map-Server of its
		// index (each index has two of the three: at least one remote).
		for _, a := range ases {
			s := toABR[a]
			if !s.Wait(ctx, time.Until(deadline), func(fs []lab.Captured) bool {
				for _, f := range fs {
					ip := lab.IPOf(f.Frame)
					if p := lispPayload(f.Frame); f.Outgoing && ip != nil && len(p) > 0 && p[0]>>4 == 4 &&
						netip.AddrFrom4([4]byte(ip[16:20])).String() == a.rloc {
						return true
					}
				}
				return false
			}) {
				var seen []string
				for _, f := range s.Frames() {
					if p := lispPayload(f.Frame); len(p) > 0 && lispPort(f.Frame) != 0 {
						ip := lab.IPOf(f.Frame)
						seen = append(seen, fmt.Sprintf("%v→%v type %d out=%v", netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), p[0]>>4, f.Outgoing))
					}
				}
				t.Fatalf("AS %d: no Map-Notify to its ETR within 60 s; LISP frames on its link: %v", a.asn, seen)
			}
		}
	}
	before := map[string]float64{}
	for _, a := range ases {
		c, err := lab.Scrape(ctx, a.ns, "127.0.0.1:9100")
		must(err)
		before[a.ns] = c.Total("packets", "validated")
	}

	send := func(from *decentAS, dst, payload string) {
		t.Helper()
		must(sendDatagram(from.hns, dst, payload))
	}
	for _, c := range []struct{ from, to *decentAS }{{ases[0], ases[1]}, {ases[0], ases[2]}, {ases[2], ases[1]}} {
		t.Run(fmt.Sprintf("AS%d-to-AS%d", c.from.asn, c.to.asn), func(t *testing.T) {
			var payload string
			delivered := false
			for i := 0; i < 100 && !delivered; i++ {
				payload = fmt.Sprintf("decent-%s-%d-%d-%03d", mode, c.from.asn, c.to.asn, i)
				send(c.from, c.to.host+":4242", payload)
				delivered = c.to.hsniff.Wait(ctx, 200*time.Millisecond, func([]lab.Captured) bool { return frameWith(c.to.hsniff, payload, false) != nil })
			}
			if !delivered {
				t.Fatalf("nothing delivered to %s", c.to.host)
			}
			c.from.hsniff.Wait(ctx, 5*time.Second, func([]lab.Captured) bool { return frameWith(c.from.hsniff, payload, true) != nil })
			sent, got := lab.IPOf(frameWith(c.from.hsniff, payload, true)), lab.IPOf(frameWith(c.to.hsniff, payload, false))
			if sent == nil || got == nil {
				t.Fatal("sent or delivered frame not captured")
			}
			// Two hops: the ITR and the ETR.
			if hopCount(got) != hopCount(sent)-2 || !bytes.Equal(normalised(got, 0), normalised(sent, 0)) {
				t.Fatalf("delivered packet differs from the sent one (but for two hops):\n sent %x\n  got %x", sent, got)
			}
			if c.from != ases[0] {
				return
			}
			// On the transit: LISP data from abr1's RLOC to the ETR's, the
			// inner packet tagged.
			var enc []byte
			at1out.Wait(ctx, 5*time.Second, func([]lab.Captured) bool {
				for _, f := range at1out.Frames() {
					if !f.Outgoing && bytes.Contains(f.Frame, []byte(payload)) {
						enc = f.Frame
						return true
					}
				}
				return false
			})
			if enc == nil || binary.BigEndian.Uint16(enc[12:]) != 0x0800 || lispPort(enc) != 4341 {
				t.Fatalf("no LISP data frame from abr1 on the transit: %x", enc)
			}
			ip := lab.IPOf(enc)
			if netip.AddrFrom4([4]byte(ip[12:16])).String() != ases[0].rloc || netip.AddrFrom4([4]byte(ip[16:20])).String() != c.to.rloc {
				t.Fatalf("outer header %v → %v, want %s → %s", netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])), ases[0].rloc, c.to.rloc)
			}
			if _, err := psavref.Find(lispPayload(enc)[8:]); err != nil {
				t.Fatalf("inner packet not tagged: %v", err)
			}
		})
	}

	// The ITRs missed first, asked Decent, then tagged; the ETRs validated.
	c1, err := lab.Scrape(ctx, ases[0].ns, "127.0.0.1:9100")
	must(err)
	if c1.Total("drops", "lisp-miss") < 1 || c1.Total("packets", "tagged") < 2 {
		t.Errorf("abr1: want lisp-miss drops before the Map-Reply and ≥ 2 tagged; %v", c1)
	}
	for _, a := range ases[1:] {
		c, err := lab.Scrape(ctx, a.ns, "127.0.0.1:9100")
		must(err)
		if c.Total("packets", "validated")-before[a.ns] < 1 {
			t.Errorf("AS %d: nothing validated at its ETR", a.asn)
		}
	}
	for _, a := range ases {
		m := rawMetrics(t, a.ns, "127.0.0.1:9100")
		if mode == "push" {
			if v := metricValue(t, m, "psavd_decent_push_mismatches_total"); v != 0 {
				t.Errorf("AS %d: %v push mismatches", a.asn, v)
			}
		} else {
			if v := metricValue(t, m, "psavd_decent_pull_mismatches_total"); v != 0 {
				t.Errorf("AS %d: %v registrations for indexes its Map-Server does not own", a.asn, v)
			}
			if v := metricValue(t, m, `psavd_decent_pull_resolutions_total{result="ok"}`); v < 1 {
				t.Errorf("AS %d: no map-server name resolved over DoT", a.asn)
			}
		}
	}

	// A LISP packet from the transit LAN with an untagged inner source of
	// AS 65001.
	inner := header.AppendIPv4(nil, header.IPv4Fields{ID: 7, Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: 17, Src: netip.MustParseAddr(ases[0].host), Dst: netip.MustParseAddr(ases[1].host)}, udpDatagram(4242, 4242, []byte("decent-spoofed-inner")))
	c2before, err := lab.Scrape(ctx, ases[1].ns, "127.0.0.1:9100")
	must(err)
	must(netlab.Do(sw, func() error {
		c, err := net.Dial("udp", ases[1].rloc+":4341")
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
	deadline = time.Now().Add(10 * time.Second)
	for {
		c2, err := lab.Scrape(ctx, ases[1].ns, "127.0.0.1:9100")
		must(err)
		if c2.Total("drops", "no-tag")-c2before.Total("drops", "no-tag") >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spoofed inner source not dropped no-tag at abr2: %v", c2)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if frameWith(ases[1].hsniff, "decent-spoofed-inner", false) != nil {
		t.Fatal("a spoofed inner source reached h2")
	}
}

var digestRE = regexp.MustCompile(`psavd_decent_push_digest_info\{digest="([0-9a-f]+)"\} 1`)

// digestOf is the push registration digest in a scrape ("" if none).
func digestOf(scrape string) string {
	if m := digestRE.FindStringSubmatch(scrape); m != nil {
		return m[1]
	}
	return ""
}
