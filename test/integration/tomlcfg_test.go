package integration

import (
	"fmt"
	"strings"
	"testing"
)

// The sections of psavd's TOML configuration that most tests write alike:
// each test's config is these joined with what is particular to it, so that
// what it tests stands out. Every piece begins with its table header, so the
// pieces join in any order without a key landing in the wrong table.

// controlTOML is the [control] section: the psavctl socket at sock.
func controlTOML(sock string) string {
	return fmt.Sprintf("[control]\nsocket = %q\n", sock)
}

// metricsTOML is the [metrics] section: the HTTP listener at listen.
func metricsTOML(listen string) string {
	return fmt.Sprintf("[metrics]\nlisten = %q\n", listen)
}

// psavTOML is the [psav] section of AS asn and, with prefixes, the AS's own
// [[psav.member]] entry holding them.
func psavTOML(asn uint32, prefixes ...string) string {
	s := fmt.Sprintf("[psav]\nasn = %d\n", asn)
	if len(prefixes) > 0 {
		s += memberTOML(asn, prefixes...)
	}
	return s
}

// psavHeader is the [psav] section of an AS with period-second epochs and
// one member entry, its own.
func psavHeader(asn uint32, period int, prefix string) string {
	return fmt.Sprintf("[psav]\nasn = %d\nepoch_seconds = %d\n", asn, period) + memberTOML(asn, prefix)
}

// memberTOML is one [[psav.member]] entry: AS asn holds prefixes.
func memberTOML(asn uint32, prefixes ...string) string {
	quoted := make([]string, len(prefixes))
	for i, p := range prefixes {
		quoted[i] = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("[[psav.member]]\nasn = %d\nprefixes = [%s]\n", asn, strings.Join(quoted, ", "))
}

// staticPeerTOML is a [[psav.static_peer]] entry for AS asn from startEpoch
// on, with the fixed test secret s0 (both sides of a pair write the same).
func staticPeerTOML(asn uint32, startEpoch int64) string {
	return fmt.Sprintf(`[[psav.static_peer]]
asn = %d
start_epoch = %d
s0 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
`, asn, startEpoch)
}

// bumpInWirePorts are an ABR's two ports as a bump in the wire: "inside"
// on "in" (ingress, towards its AS) and "outside" on "out" (towards the
// other AS, in outsideRole), each forwarding to the other.
func bumpInWirePorts(outsideRole string) string {
	return fmt.Sprintf(`[[port]]
name = "inside"
interface = "in"
role = "ingress"
peer = "outside"
[[port]]
name = "outside"
interface = "out"
role = %q
peer = "inside"
`, outsideRole)
}

// routedPorts are a routing ABR's engine mode and two ports: "inside" on
// "in" (ingress) and "outside" on "out" (egress); the [[route]] entries
// say where packets go.
const routedPorts = `[engine]
forwarding = "routed"
[[port]]
name = "inside"
interface = "in"
role = "ingress"
[[port]]
name = "outside"
interface = "out"
role = "egress"
`

// routedLISPPorts are routedPorts with "outside" encapsulating LISP (the
// keys below continue routedPorts' last table, the "outside" port).
const routedLISPPorts = routedPorts + `encap = "lisp"
mtu = 1500
`

// routeTOML is one [[route]] entry: prefix out of port to nextHopMAC.
func routeTOML(prefix, port, nextHopMAC string) string {
	return fmt.Sprintf("[[route]]\nprefix = %q\nport = %q\nnext_hop_mac = %q\n", prefix, port, nextHopMAC)
}

// abrSection is the [abr] section of AS asn's border router name: fed by
// the ACS at acs, with a certificate of its own (abrCertFiles).
func (al *alliance) abrSection(t *testing.T, asn uint32, name, acs string) string {
	t.Helper()
	cert, key := al.abrCertFiles(t, asn, name)
	return fmt.Sprintf("[abr]\nacs = %q\ncert = %q\nkey = %q\nca = %q\n", acs, cert, key, al.caFile)
}
