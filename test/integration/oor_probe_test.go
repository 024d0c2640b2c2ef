package integration

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/oorpeer"
)

// The probing lab is oorLab with a second OOR locator: OOR's xTR has
// "rloc" (10.77.0.2, priority 1) and "rloc2" (10.77.1.2, priority 2), both
// on the underlay bridge (ports p2 and p4). OOR answers ARP only on the
// interface that holds the address, and sends what it sources from
// 10.77.1.2 out of rloc2 (a source rule ahead of OOR's own), so each
// locator is reachable only through its own link.
const (
	oorRLOC2       = "10.77.1.2"
	oorRLOC2MAC    = "02:00:00:16:02:04"
	probeLabExtra  = "10.77.0.5" // the locator psavd's reload adds to its mapping (nobody answers there)
	probeMetricsAt = "127.0.0.1:9119"
)

// newProbeLab is oorLab plus OOR's second locator link.
func newProbeLab(t *testing.T) *oorLab {
	t.Helper()
	l := newOORLab(t)
	if err := l.topo.Veth(l.oorNS, "rloc2", oorRLOC2MAC, l.ulNS, "p4", ""); err != nil {
		t.Fatal(err)
	}
	ipCmds(t,
		[]string{"-n", l.ulNS, "link", "set", "p4", "master", "br0"},
		[]string{"-n", l.oorNS, "addr", "add", oorRLOC2 + "/24", "dev", "rloc2"},
		[]string{"-n", l.oorNS, "rule", "add", "from", oorRLOC2, "lookup", "177", "priority", "5"},
		[]string{"-n", l.oorNS, "route", "add", "10.77.0.0/24", "dev", "rloc2", "table", "177"},
		// psavd's kernel reaches 10.77.1.2 on the bridge (its probes; the
		// engine has its own route).
		[]string{"-n", l.psavdNS, "route", "add", "10.77.1.0/24", "dev", "out"},
	)
	for _, s := range []string{"net.ipv4.conf.all.arp_ignore=1"} {
		if _, err := netlab.Exec(l.oorNS, "sysctl", "-w", s); err != nil {
			t.Fatalf("sysctl %s: %v", s, err)
		}
	}
	for _, x := range [][2]string{{l.oorNS, "rloc2"}, {l.ulNS, "p4"}} {
		if _, err := netlab.Exec(x[0], "ethtool", "-K", x[1], "tx", "off"); err != nil {
			t.Skipf("ethtool: %v", err)
		}
	}
	return l
}

// startOORxTR2 runs OOR's xTR for 10.9.1.0/24 with both locators,
// probing the RLOCs of its map-cache every 5 s (one retry after 2 s), and
// waits for its registration to be confirmed.
func (l *oorLab) startOORxTR2(t *testing.T) *oorpeer.OOR {
	t.Helper()
	o := l.startOOR(t, "xtr", oorConf(
		"debug = 2", "operating-mode = xTR", "encapsulation = LISP",
		"rloc-probing {\n rloc-probe-interval = 5\n rloc-probe-retries = 1\n rloc-probe-retries-interval = 2\n}",
		fmt.Sprintf("map-resolver = { %s }", oorMSAddr),
		fmt.Sprintf("map-server {\n address = %s\n key-type = 1\n key = %s\n proxy-reply = off\n}", oorMSAddr, oorLabOORKey),
		fmt.Sprintf("database-mapping {\n eid-prefix = %s\n iid = 0\n ttl = 10\n"+
			" rloc-iface {\n  interface = rloc\n  ip_version = 4\n  priority = 1\n  weight = 100\n }\n"+
			" rloc-iface {\n  interface = rloc2\n  ip_version = 4\n  priority = 2\n  weight = 100\n }\n}", oorLabOOREIDs),
	))
	confirmed := "Map-Notify message confirms correct registration of " + oorLabOOREIDs
	if err := o.Wait(60*time.Second, func() bool { return o.Count(confirmed) >= 1 }); err != nil {
		t.Fatalf("OOR xTR's registration of %s not confirmed: %v", oorLabOOREIDs, err)
	}
	return o
}

// probeLabConfig is psavd's xTR of 10.10.2.0/24 (IPv4) on AF_XDP ports,
// registering with and resolving through OOR's Map-Server, probing every
// 2 s (two re-sends 500 ms apart), the engine routing 10.77.1.2 to
// rloc2's MAC; locators are the database mapping's rlocs.
func (l *oorLab) probeLabConfig(sock, locators string) string {
	return controlTOML(sock) + metricsTOML(probeMetricsAt) + psavTOML(65002, oorLabPsavdEIDs) + routedLISPPorts +
		routeTOML(oorLabPsavdEIDs, "inside", oorLabPhMAC) + routeTOML("0.0.0.0/0", "outside", oorLabOORRLOCMAC) +
		routeTOML(oorRLOC2+"/32", "outside", oorRLOC2MAC) +
		fmt.Sprintf(`[lisp]
rlocs = [%[1]q]
control_listen = "%[1]s:4342"
rloc_probe_interval = "2s"
rloc_probe_timeout = "500ms"
rloc_probe_retries = 2
[[lisp.database]]
eid = %[2]q
rlocs = [%[3]s]
`, oorPsavdAddr, oorLabPsavdEIDs, locators) + oorLabRegisterTOML
}

// lispDataTo reports whether s captured a LISP data packet (UDP 4341) to
// rloc carrying payload.
func lispDataTo(s *lab.Sniffer, rloc, payload string) bool {
	dst := netip.MustParseAddr(rloc).As4()
	for _, f := range s.Frames() {
		p := ipPacket(f.Frame)
		if len(p) < 28 || p[0]>>4 != 4 || p[9] != 17 || [4]byte(p[16:20]) != dst {
			continue
		}
		udp := p[int(p[0]&0xf)*4:]
		if len(udp) >= 8 && int(udp[2])<<8|int(udp[3]) == 4341 && strings.Contains(string(udp), payload) {
			return true
		}
	}
	return false
}

// TestOORProbeFailoverAndSMR (issue 16, must-show 4): RLOC-probing and
// SMRs between psavd's xTR (AF_XDP) and OOR's xTR, whose EID prefix
// 10.9.1.0/24 has two locators (10.77.0.2 priority 1, 10.77.1.2 priority
// 2), through OOR's Map-Server. After traffic both ways:
//
//   - OOR probes psavd's RLOC and keeps it up: its log shows "Successfully
//     probed RLOC 10.77.0.1" (psavd's Map-Reply has P and p) and never
//     that locator going down; psavd's probes of both of OOR's locators
//     are answered (psavd_lisp_xtr_probed_locators{state="up"} 2).
//   - SMR from psavd: psavd's configuration gains a second locator for its
//     prefix (10.77.0.5, priority 2) and is reloaded (SIGHUP): psavd
//     registers it and sends SMRs to OOR's locators; OOR sends its
//     SMR-invoked Map-Request through the Map-Resolver (psavd counts it,
//     smr-acked), replaces its map-cache entry, and starts probing the
//     new locator — its map-cache holds the new mapping.
//   - SMR from OOR: rloc2 goes down in OOR's namespace; OOR sends SMRs,
//     psavd acts on them with SMR-invoked Map-Requests (smr-received,
//     smr-invoked-request) answered through OOR's Map-Resolver, and its
//     map-cache entry drops the locator OOR no longer registers; when
//     rloc2 comes back, so does the locator.
//   - Failover: with rloc2 back, traffic from psavd's site is
//     encapsulated to 10.77.0.2 (priority 1). Then that locator's link is
//     cut at the bridge (p2 leaves br0: OOR's interface stays up, so OOR
//     neither re-registers nor sends an SMR and only probes can tell):
//     psavd's probes to 10.77.0.2 go unanswered, psavd marks it down
//     (psavctl map-cache: up false; locator-down counted) and the next
//     datagrams reach OOR's host encapsulated to 10.77.1.2, seen on the
//     surviving link (p4) and not on the cut one.
//
// tshark then decodes every LISP message on psavd's underlay link,
// probes, probe replies and SMRs included, without a malformed or expert
// mark. No step has a timing bound beyond a generous deadline.
func TestOORProbeFailoverAndSMR(t *testing.T) {
	l := newProbeLab(t)
	l.startMapServer(t)
	oor := l.startOORxTR2(t)
	underlay, err := lab.Sniff(l.ulNS, "p1")
	if err != nil {
		t.Fatal(err)
	}
	defer underlay.Close()
	atA, err := lab.Sniff(l.ulNS, "p2")
	if err != nil {
		t.Fatal(err)
	}
	defer atA.Close()
	atB, err := lab.Sniff(l.ulNS, "p4")
	if err != nil {
		t.Fatal(err)
	}
	defer atB.Close()

	sock := filepath.Join(l.dir, "psavd.sock")
	path := filepath.Join(l.dir, "xtr.toml")
	own := fmt.Sprintf("{ address = %q, priority = 1, weight = 100 }", oorPsavdAddr)
	if err := os.WriteFile(path, []byte(l.probeLabConfig(sock, own)), 0o644); err != nil {
		t.Fatal(err)
	}
	psavd := startPsavd(t, psavdBinary(t), l.psavdNS, path, true)
	ev := func(name, event string) float64 {
		return metric(t, l.psavdNS, probeMetricsAt, name, map[string]string{"event": event})
	}
	etr := func(event string) float64 { return ev("psavd_lisp_xtr_etr_total", event) }
	itr := func(event string) float64 { return ev("psavd_lisp_xtr_itr_total", event) }
	waitUntil := func(what string, d time.Duration, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(d); !ok(); time.Sleep(250 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s: not within %v (psavd map-cache:\n%s)", what, d, psavctl(t, sock, "map-cache"))
			}
		}
	}
	waitUntil("psavd's registration confirmed by OOR's Map-Server", 60*time.Second, func() bool { return etr("notify") >= 1 })

	hostPort := func(a string) string { return netip.AddrPortFrom(netip.MustParseAddr(a), 4242).String() }
	toOh := newUDPSink(t, l.oorHost, hostPort(oorLabOORHost))
	toPh := newUDPSink(t, l.psavdHost, hostPort(oorLabPsavdHost))
	deliver(t, l.psavdHost, hostPort(oorLabOORHost), "ph-to-oh", 64, toOh)
	deliver(t, l.oorHost, hostPort(oorLabPsavdHost), "oh-to-ph", 64, toPh)

	// psavd's map-cache entry for OOR's prefix, by locator address.
	locators := func() map[string]map[string]any {
		for _, e := range psavctlJSON(t, sock, "map-cache")["entries"].([]any) {
			e := e.(map[string]any)
			if e["eid"] != oorLabOOREIDs {
				continue
			}
			m := map[string]map[string]any{}
			for _, loc := range e["locators"].([]any) {
				loc := loc.(map[string]any)
				m[loc["address"].(string)] = loc
			}
			return m
		}
		return nil
	}
	up := func(addr string) bool { return locators()[addr]["up"] == true }
	if ls := locators(); len(ls) != 2 || ls[oorRLOC]["priority"] != float64(1) || ls[oorRLOC2]["priority"] != float64(2) {
		t.Fatalf("psavd's map-cache entry for %s: %v, want OOR's two locators", oorLabOOREIDs, ls)
	}

	// Probing both ways.
	waitUntil("psavd's probes of both OOR locators answered", 60*time.Second, func() bool {
		return itr("probe-reply") >= 2 && metric(t, l.psavdNS, probeMetricsAt, "psavd_lisp_xtr_probed_locators", map[string]string{"state": "up"}) == 2
	})
	probedOK := "Successfully probed RLOC " + oorPsavdAddr + " of cache entry with EID " + oorLabPsavdEIDs
	if err := oor.Wait(60*time.Second, func() bool { return oor.Count(probedOK) >= 2 }); err != nil {
		t.Fatalf("OOR did not take psavd's probe replies (%q): %v", probedOK, err)
	}
	if n := oor.Count("for locator " + oorPsavdAddr + " and EID: " + oorLabPsavdEIDs + " -> Locator state changes to DOWN"); n != 0 {
		t.Fatalf("OOR marked psavd's RLOC down %d times", n)
	}
	if v := itr("probe-bad-nonce"); v != 0 {
		t.Fatalf("%v probe replies with an unknown nonce", v)
	}

	// SMR from psavd: its mapping gains a locator.
	smrFor := "SMR: Map-Request for EID: " + oorLabPsavdEIDs
	replacing := "Mapping with EID " + oorLabPsavdEIDs + " already exists, replacing!"
	smrs0, replaced0 := oor.Count(smrFor), oor.Count(replacing)
	two := own + fmt.Sprintf(", { address = %q, priority = 2, weight = 100 }", probeLabExtra)
	if err := os.WriteFile(path, []byte(l.probeLabConfig(sock, two)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := psavd.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil("the database reload applied", 30*time.Second, func() bool {
		return strings.Contains(psavd.log.String(), "lisp.database[0].rlocs[1] added")
	})
	waitUntil("psavd's SMRs sent", 30*time.Second, func() bool { return etr("smr") >= 1 })
	if err := oor.Wait(60*time.Second, func() bool {
		return oor.Count(smrFor) > smrs0 && oor.Count(replacing) > replaced0 && oor.Count("Map-Request Probe for locator "+probeLabExtra) >= 1
	}); err != nil {
		t.Fatalf("OOR did not act on psavd's SMR (SMR-invoked requests %d → %d, replaced %d → %d, probes of %s %d): %v",
			smrs0, oor.Count(smrFor), replaced0, oor.Count(replacing), probeLabExtra, oor.Count("Map-Request Probe for locator "+probeLabExtra), err)
	}
	waitUntil("OOR's SMR-invoked Map-Request reached psavd's ETR", 30*time.Second, func() bool { return etr("smr-acked") >= 1 })

	// SMR from OOR: its second locator's interface goes down and up.
	ipCmds(t, []string{"-n", l.oorNS, "link", "set", "rloc2", "down"})
	waitUntil("psavd acted on OOR's SMR", 60*time.Second, func() bool {
		return itr("smr-received") >= 1 && itr("smr-invoked-request") >= 1
	})
	// OOR's mapping without the interface that went down, in psavd's
	// map-cache from the SMR-invoked Map-Request's reply (probes change
	// only a locator's state, never the locator set).
	waitUntil("psavd's map-cache follows OOR's SMR", 30*time.Second, func() bool {
		ls := locators()
		return len(ls) == 1 && ls[oorRLOC] != nil
	})
	ipCmds(t, []string{"-n", l.oorNS, "link", "set", "rloc2", "up"},
		[]string{"-n", l.oorNS, "route", "replace", "10.77.0.0/24", "dev", "rloc2", "table", "177"})
	waitUntil("both OOR locators up again in psavd's map-cache", 90*time.Second, func() bool {
		ls := locators()
		return len(ls) == 2 && ls[oorRLOC]["up"] == true && ls[oorRLOC2]["up"] == true
	})

	// Failover.
	before := deliver(t, l.psavdHost, hostPort(oorLabOORHost), "before-cut", 64, toOh)
	atA.Wait(context.Background(), 5*time.Second, func([]lab.Captured) bool { return lispDataTo(atA, oorRLOC, before) })
	if !lispDataTo(atA, oorRLOC, before) || lispDataTo(atB, oorRLOC2, before) {
		t.Fatalf("before the cut the datagram did not go to the priority-1 locator %s only", oorRLOC)
	}
	down0 := itr("locator-down")
	ipCmds(t, []string{"-n", l.ulNS, "link", "set", "p2", "nomaster"})
	waitUntil("psavd's probes mark "+oorRLOC+" down", 60*time.Second, func() bool { return !up(oorRLOC) && up(oorRLOC2) })
	if itr("locator-down") <= down0 {
		t.Fatal("locator-down not counted")
	}
	after := deliver(t, l.psavdHost, hostPort(oorLabOORHost), "after-cut", 64, toOh)
	atB.Wait(context.Background(), 5*time.Second, func([]lab.Captured) bool { return lispDataTo(atB, oorRLOC2, after) })
	if !lispDataTo(atB, oorRLOC2, after) || lispDataTo(atA, oorRLOC, after) {
		t.Fatalf("after the cut the datagram was not encapsulated to the surviving locator %s on its link", oorRLOC2)
	}
	t.Logf("psavd's map-cache after the cut:\n%s", psavctl(t, sock, "map-cache"))
	t.Logf("psavd: probes %v (re-sent %v), probe replies %v, locators down %v / up %v; SMRs sent %v, acked %v; SMRs received %v, SMR-invoked requests %v; "+
		"OOR: took psavd's probe replies %d times, SMR-invoked requests for %s %d, probes of the added locator %d",
		itr("probe"), itr("probe-retry"), itr("probe-reply"), itr("locator-down"), itr("locator-up"), etr("smr"), etr("smr-acked"),
		itr("smr-received"), itr("smr-invoked-request"), oor.Count(probedOK), oorLabPsavdEIDs, oor.Count(smrFor), oor.Count("Map-Request Probe for locator "+probeLabExtra))
	checkLISPWithTshark(t, l.dir, underlay.Frames())
}
