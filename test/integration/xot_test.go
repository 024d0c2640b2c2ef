package integration

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/psavd/psavd/internal/bindserver"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/testpki"
	"github.com/psavd/psavd/internal/testtool"
)

// TestXoTLiveZoneToBIND (issue 17, must-show 4): psavd serves the mapping
// zone from live LISP-Decent push membership and hands it over TLS
// (RFC 9103 XoT) to a real BIND 9.18 secondary, which serves it; a
// membership change reaches BIND through NOTIFY and a new transfer.
//
// Namespace "xa" holds psavd A — a push member (RLOC 10.77.0.1, unicast
// group 239.77.0.2) with [adot.server] on 127.0.0.1:853: zone
// map.decent.test from index_modulus = 4 and the group's members,
// secondaries = ["127.0.0.1"], NOTIFY to BIND — and BIND, secondary of
// map.decent.test from 127.0.0.1:853 over strict TLS (ca-file,
// remote-hostname). Namespace "xb" holds psavd B, a push member (RLOC
// 10.77.0.2) that joins through A; a veth links them (10.77.0.0/24).
//
// First A alone: BIND (plain DNS on its loopback listener) serves every
// <index>.map.decent.test with A 10.77.0.1. Then B starts and joins: every
// index gets both members (replicas 2), which BIND serves under a higher
// serial. Then B stops: its membership expires, and BIND serves 10.77.0.1
// alone again. psavd A's /metrics count the transfers and the acknowledged
// NOTIFYs. No timing assertions: every wait polls with a generous deadline.
func TestXoTLiveZoneToBIND(t *testing.T) {
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	testtool.Path(t, "named", "bind9")
	bin := psavdBinary(t)
	topo, must := newTopology(t)
	nsA, err := topo.NS("xa")
	must(err)
	nsB, err := topo.NS("xb")
	must(err)
	must(topo.Veth(nsA, "eth0", "", nsB, "eth0", ""))
	must(netlab.IP("-n", nsA, "addr", "add", "10.77.0.1/24", "dev", "eth0"))
	must(netlab.IP("-n", nsB, "addr", "add", "10.77.0.2/24", "dev", "eth0"))

	const (
		zone    = "map.decent.test."
		dnsName = "dns.decent.test"
		modulus = 4
	)
	dir := t.TempDir()
	pki, err := testpki.NewServerPKI(mkdir(t, dir, "pki"), dnsName)
	must(err)

	enterA := func(fn func() error) error { return netlab.Do(nsA, fn) }

	push := func(rloc, members string) string {
		return fmt.Sprintf(`[lisp]
rlocs = [%q]
control_listen = "%s:4343"
[[lisp.site]]
name = "xot"
key = "xot-live-zone-site"
key_id = 2
eid_prefixes = ["198.51.100.0/24"]
[lisp.decent]
mode = "push"
group = "239.77.0.2"
transport = "unicast"
members = [%s]
membership_key = "xot-live-zone"
membership_key_id = 2
refresh_interval = "1s"
registration_ttl = "3s"
`, rloc, rloc, members)
	}
	cfgA := writeConfig(t, dir, "a.toml", fmt.Sprintf(`[psav]
asn = 65001
[control]
socket = %q
[metrics]
listen = "127.0.0.1:9100"
%s[adot.server]
listen = "127.0.0.1:853"
cert = %q
key = %q
zone = %q
ttl = 5
index_modulus = %d
index_replicas = 2
secondaries = ["127.0.0.1"]
notify = [%q]
[adot.server.records]
"@" = ["NS ns.decent.test."]
`, filepath.Join(dir, "a.sock"), push("10.77.0.1", ""), pki.CertFile, pki.KeyFile, strings.TrimSuffix(zone, "."), modulus, xotNotify))
	cfgB := writeConfig(t, dir, "b.toml", fmt.Sprintf(`[psav]
asn = 65002
[control]
socket = %q
[metrics]
listen = "127.0.0.1:9100"
%s`, filepath.Join(dir, "b.sock"), push("10.77.0.2", `"10.77.0.1"`)))

	a := startPsavd(t, bin, nsA, cfgA, true)
	sec := startSecondary(t, nsA, zone, dnsName, pki.CAFile)
	w := &xotWatch{t: t, sec: sec, enter: enterA, modulus: modulus, zone: zone}
	s1 := w.waitOwners("A alone", "10.77.0.1")

	b := startPsavd(t, bin, nsB, cfgB, true)
	s2 := w.waitOwners("B joined", "10.77.0.1", "10.77.0.2")

	b.Stop()
	s3 := w.waitOwners("B left", "10.77.0.1")
	if !(s1 < s2 && s2 < s3) {
		t.Fatalf("serials %d, %d, %d: want increasing", s1, s2, s3)
	}

	m := rawMetrics(t, nsA, "127.0.0.1:9100")
	xfrs := metricValue(t, m, `psavd_adot_zone_transfers_total{kind="axfr",role="server"}`) +
		metricValue(t, m, `psavd_adot_zone_transfers_total{kind="ixfr",role="server"}`)
	acked := metricValue(t, m, `psavd_adot_notifies_total{result="acked",role="server"}`)
	if xfrs < 3 || acked < 3 {
		t.Fatalf("psavd A: %v transfers, %v NOTIFYs acked; want ≥ 3 each (start, join, leave)", xfrs, acked)
	}
	if v := metricValue(t, m, `psavd_adot_zone_serial{role="server"}`); uint32(v) != s3 {
		t.Fatalf("psavd A serves serial %v, BIND %d", v, s3)
	}
	t.Logf("psavd A: %v transfers, %v NOTIFYs acked, %v refused transfers", xfrs, acked,
		metricValue(t, m, `psavd_adot_zone_transfers_refused_total{role="server"}`))
	a.Stop()
}

// The BIND secondary's clear listener, inside a test's own namespace.
const (
	xotNotifyPort = 5353
	xotNotify     = "127.0.0.1:5353"
)

// startSecondary starts BIND in namespace ns as a secondary of zone from
// psavd's 127.0.0.1:853 over strict TLS (the certificate for dnsName,
// verified by caFile), its clear listener (where NOTIFY arrives) on
// xotNotify, or skips without named. Start psavd first: a
// secondary whose first transfer found nobody waits for its retry timer
// (about a minute) and only queues the NOTIFYs that come meanwhile.
func startSecondary(t *testing.T, ns, zone, dnsName, caFile string) *bindserver.BIND {
	t.Helper()
	sec, err := bindserver.Start("", bindserver.Options{NetNS: ns, Enter: func(fn func() error) error { return netlab.Do(ns, fn) },
		Zone: zone, ServerName: "secondary.decent.test", ClearPort: xotNotifyPort,
		Secondary: &bindserver.Secondary{Primary: "127.0.0.1:853", ServerName: dnsName, CAFile: caFile}})
	if errors.Is(err, bindserver.ErrNoNamed) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("named:\n%s", sec.Log())
		}
		_ = sec.Stop()
	})
	return sec
}

// xotWatch asks the BIND secondary (plain DNS on its loopback listener)
// what it serves of the <index> names.
type xotWatch struct {
	t       *testing.T
	sec     *bindserver.BIND
	enter   func(func() error) error
	modulus int
	zone    string
}

func (w *xotWatch) ask(name string, qt uint16) *dns.Msg {
	var r *dns.Msg
	_ = w.enter(func() error {
		q := new(dns.Msg)
		q.SetQuestion(name, qt)
		var err error
		r, err = dns.Exchange(q, w.sec.ClearAddr)
		return err
	})
	return r
}

func (w *xotWatch) servedSerial() uint32 {
	if r := w.ask(w.zone, dns.TypeSOA); r != nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
		return r.Answer[0].(*dns.SOA).Serial
	}
	return 0
}

// owners is what BIND serves for index i: its A records, sorted.
func (w *xotWatch) owners(i int) []string {
	r := w.ask(fmt.Sprintf("%d.%s", i, w.zone), dns.TypeA)
	if r == nil || r.Rcode != dns.RcodeSuccess || !r.Authoritative {
		return nil
	}
	var got []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			got = append(got, a.A.String())
		}
	}
	slices.Sort(got)
	return got
}

// waitIndexes polls until BIND serves want[i] for every index i (90 s at
// most) and returns the serial it serves.
func (w *xotWatch) waitIndexes(step string, want [][]string) uint32 {
	w.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var got [][]string
		for i := range w.modulus {
			got = append(got, w.owners(i))
		}
		if slices.EqualFunc(got, want, slices.Equal) {
			s := w.servedSerial()
			w.t.Logf("%s: BIND serves %v, serial %d", step, got, s)
			return s
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: BIND does not serve %v within 90 s (serves %v, serial %d)", step, want, got, w.servedSerial())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitOwners: the same owners for every index.
func (w *xotWatch) waitOwners(step string, want ...string) uint32 {
	w.t.Helper()
	all := make([][]string, w.modulus)
	for i := range all {
		all[i] = want
	}
	return w.waitIndexes(step, all)
}

// TestXoTConfiguredOwnersReload: the zone's indexes owned by configured
// index_owners (no push group); a reload (SIGHUP) that changes them
// reaches the BIND secondary through NOTIFY and a transfer, and so does
// one that changes only a static record. The owners per index are
// pull.IndexOwners' (replicas 2 of the sorted owners, consecutive).
func TestXoTConfiguredOwnersReload(t *testing.T) {
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	testtool.Path(t, "named", "bind9")
	bin := psavdBinary(t)
	topo, _ := newTopology(t)
	ns, err := topo.NS("xo")
	if err != nil {
		t.Fatal(err)
	}
	const (
		zone    = "map.decent.test."
		dnsName = "dns.decent.test"
		modulus = 3
	)
	dir := t.TempDir()
	pki, err := testpki.NewServerPKI(mkdir(t, dir, "pki"), dnsName)
	if err != nil {
		t.Fatal(err)
	}
	config := func(owners, txt string) string {
		return fmt.Sprintf(`[psav]
asn = 65001
[control]
socket = %q
[metrics]
listen = "127.0.0.1:9100"
[adot.server]
listen = "127.0.0.1:853"
cert = %q
key = %q
zone = %q
index_modulus = %d
index_owners = [%s]
secondaries = ["127.0.0.1"]
notify = [%q]
[adot.server.records]
"@" = ["NS ns.decent.test."]
"info" = ["TXT \"%s\""]
`, filepath.Join(dir, "o.sock"), pki.CertFile, pki.KeyFile, strings.TrimSuffix(zone, "."), modulus, owners, xotNotify, txt)
	}
	cfg := writeConfig(t, dir, "o.toml", config(`"192.0.2.1", "192.0.2.2"`, "first"))
	p := startPsavd(t, bin, ns, cfg, true)
	sec := startSecondary(t, ns, zone, dnsName, pki.CAFile)
	w := &xotWatch{t: t, sec: sec, enter: func(fn func() error) error { return netlab.Do(ns, fn) }, modulus: modulus, zone: zone}
	s1 := w.waitOwners("two owners", "192.0.2.1", "192.0.2.2")

	reload := func(text string) {
		t.Helper()
		writeConfig(t, dir, "o.toml", text)
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	reload(config(`"192.0.2.3", "192.0.2.1", "192.0.2.2"`, "first"))
	// Sorted .1 .2 .3; index i gets positions i and i+1 (mod 3).
	s2 := w.waitIndexes("three owners", [][]string{{"192.0.2.1", "192.0.2.2"}, {"192.0.2.2", "192.0.2.3"}, {"192.0.2.1", "192.0.2.3"}})

	reload(config(`"192.0.2.3", "192.0.2.1", "192.0.2.2"`, "second"))
	deadline := time.Now().Add(90 * time.Second)
	for {
		r := w.ask("info."+zone, dns.TypeTXT)
		if r != nil && len(r.Answer) == 1 && strings.Join(r.Answer[0].(*dns.TXT).Txt, "") == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reloaded static record did not reach BIND within 90 s: %v", r)
		}
		time.Sleep(200 * time.Millisecond)
	}
	s3 := w.servedSerial()
	if !(s1 < s2 && s2 < s3) {
		t.Fatalf("serials %d, %d, %d: want increasing", s1, s2, s3)
	}
	m := rawMetrics(t, ns, "127.0.0.1:9100")
	if v := metricValue(t, m, "psavd_config_reload_success"); v != 1 {
		t.Fatalf("psavd_config_reload_success %v", v)
	}
	t.Logf("serials %d → %d → %d; %v NOTIFYs acked", s1, s2, s3, metricValue(t, m, `psavd_adot_notifies_total{result="acked",role="server"}`))
}
