package integration

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
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
//		namespace "xa": psavd A — push member (RLOC 10.77.0.1, unicast group
//		                239.77.0.2) and [adot.server] on 127.0.0.1:853, zone
//		                map.decent.test from index_modulus = 4 and the group's
//		                members, secondaries = ["127.0.0.1"], NOTIFY to BIND;
//		                BIND — secondary of map.decent.test from 127.0.0.1:853
//		                over strict TLS (ca-file, remote-hostname)
//		namespace "xb": psavd B — push member (RLOC 10.77.0.2), joins through A
//		veth between them (10.77.0.0/24)
//
//	 1. A alone: BIND (plain DNS on its loopback listener) serves every
//	    <index>.map.decent.test with A 10.77.0.1.
//	 2. B starts and joins: every index gets both members (replicas 2); BIND
//	    serves that under a higher serial.
//	 3. B stops: its membership expires; BIND serves 10.77.0.1 alone again.
//
// psavd A's /metrics count the transfers and the acknowledged NOTIFYs.
// No timing assertions: every wait polls with a generous deadline.
func TestXoTLiveZoneToBIND(t *testing.T) {
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	testtool.Path(t, "named", "bind9")
	bin := psavdBinary(t)
	topo := netlab.New()
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
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

	// BIND first: the secondary retries until psavd is up, and psavd's
	// NOTIFY at start makes it transfer at once.
	enterA := func(fn func() error) error { return netlab.Do(nsA, fn) }
	sec, err := bindserver.Start("", bindserver.Options{NetNS: nsA, Enter: enterA, Zone: zone, ServerName: "secondary.decent.test",
		Secondary: &bindserver.Secondary{Primary: "127.0.0.1:853", ServerName: dnsName, CAFile: pki.CAFile}})
	if errors.Is(err, bindserver.ErrNoNamed) {
		t.Skip(err)
	}
	must(err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("named:\n%s", sec.Log())
		}
		_ = sec.Stop()
	})

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
`, filepath.Join(dir, "a.sock"), push("10.77.0.1", ""), pki.CertFile, pki.KeyFile, strings.TrimSuffix(zone, "."), modulus, sec.ClearAddr))
	cfgB := writeConfig(t, dir, "b.toml", fmt.Sprintf(`[psav]
asn = 65002
[control]
socket = %q
[metrics]
listen = "127.0.0.1:9100"
%s`, filepath.Join(dir, "b.sock"), push("10.77.0.2", `"10.77.0.1"`)))

	ask := func(name string, qt uint16) *dns.Msg {
		var r *dns.Msg
		_ = enterA(func() error {
			q := new(dns.Msg)
			q.SetQuestion(name, qt)
			var err error
			r, err = dns.Exchange(q, sec.ClearAddr)
			return err
		})
		return r
	}
	servedSerial := func() uint32 {
		if r := ask(zone, dns.TypeSOA); r != nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1 {
			return r.Answer[0].(*dns.SOA).Serial
		}
		return 0
	}
	// owners is what BIND serves for every index: the same sorted
	// addresses for each, or nil while they differ or are missing.
	owners := func() []string {
		var first []string
		for i := range modulus {
			r := ask(fmt.Sprintf("%d.%s", i, zone), dns.TypeA)
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
			if i == 0 {
				first = got
			} else if !slices.Equal(got, first) {
				return nil
			}
		}
		return first
	}
	waitOwners := func(step string, want ...string) uint32 {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			if got := owners(); slices.Equal(got, want) {
				s := servedSerial()
				t.Logf("%s: BIND serves %d indexes → %v, serial %d", step, modulus, got, s)
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: BIND does not serve %v for every index within 90 s (serves %v, serial %d)", step, want, owners(), servedSerial())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	a := startPsavd(t, bin, nsA, cfgA, true)
	s1 := waitOwners("A alone", "10.77.0.1")

	b := startPsavd(t, bin, nsB, cfgB, true)
	s2 := waitOwners("B joined", "10.77.0.1", "10.77.0.2")

	b.Stop()
	s3 := waitOwners("B left", "10.77.0.1")
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
