package lab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/psavd/psavd/control/config/schema"

	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/internal/testpki"
)

// ACS mode: an ABR node whose topology gives `acs = "<listen address>"`
// runs psavd as its AS's ACS and ABR in one process. No key is configured:
// the lab makes, per run, what an alliance would have — a CA for the ACS
// certificates, a community key that endorses membership records, and each
// AS's signed record of its prefixes — and the ACS negotiate their state
// machines over mutual TLS 1.3 and learn each other's prefixes.

// acsSection writes node n's certificate, key and signed record into e.Dir
// and returns its [acs] section; the CA and the community key are made once
// per run.
func (e *Env) acsSection(n *Node) (*schema.ACS, error) {
	if e.ca == nil {
		ca, err := testpki.NewCA("psavd lab " + e.Run)
		if err != nil {
			return nil, err
		}
		e.ca, e.communities = ca, map[uint32]membership.Signer{}
		for _, ascn := range e.Topo.ascns() {
			if e.communities[ascn], err = membership.GenerateSigner(membership.AlgEd25519); err != nil {
				return nil, err
			}
		}
		if err := ca.WriteFile(filepath.Join(e.Dir, "alliance-ca.pem")); err != nil {
			return nil, err
		}
	}
	asn := n.ABR.ASN
	cert, err := e.ca.IssueACS(asn, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		return nil, err
	}
	certFile := filepath.Join(e.Dir, n.Name+"-acs.pem")
	keyFile := filepath.Join(e.Dir, n.Name+"-acs.key")
	if err := testpki.WriteFiles(cert, certFile, keyFile); err != nil {
		return nil, err
	}

	// The AS's membership record: its prefixes, signed by a key of its own,
	// endorsed by the community.
	asKey, err := membership.GenerateSigner(membership.AlgEd25519)
	if err != nil {
		return nil, err
	}
	listen, err := netip.ParseAddrPort(n.ABR.ACS)
	if err != nil {
		return nil, fmt.Errorf("node %s: abr.acs %q: %w", n.Name, n.ABR.ACS, err)
	}
	rec := membership.Record{Kind: membership.KindJoin, ASN: asn, ASCN: n.ABR.ASCN, Version: 1, Key: asKey.Public(), ACS: []netip.AddrPort{listen}}
	for _, m := range e.Topo.PSAV.Members {
		if m.ASN != asn {
			continue
		}
		for _, s := range m.Prefixes {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, err
			}
			rec.Prefixes = append(rec.Prefixes, p)
		}
	}
	rec.Canonicalize()
	if err := rec.Sign(asKey); err != nil {
		return nil, err
	}
	if err := rec.Endorse(e.communities[n.ABR.ASCN]); err != nil {
		return nil, err
	}
	enc, err := rec.Encode()
	if err != nil {
		return nil, err
	}
	recFile := filepath.Join(e.Dir, n.Name+".rec")
	if err := os.WriteFile(recFile, enc, 0o600); err != nil {
		return nil, err
	}

	a := &schema.ACS{Listen: n.ABR.ACS, Cert: certFile, Key: keyFile, CA: filepath.Join(e.Dir, "alliance-ca.pem"),
		Heartbeat: "500ms", DeadAfter: 3, MembershipDir: filepath.Join(e.Dir, n.Name+"-membership"), Record: recFile}
	for _, ascn := range e.Topo.ascns() {
		c := schema.ACSCommunity{ASCN: ascn, Keys: []string{e.communities[ascn].Public().String()}}
		for _, tc := range e.Topo.Communities {
			if tc.ASCN == ascn {
				c.Parent, c.Border, c.ParentPeer = tc.Parent, tc.Border, tc.ParentPeer
			}
		}
		a.Communities = append(a.Communities, c)
	}
	// Each ACS peers with the ACS it shares a key with (docs/wire.md §2.6): all
	// of its community, and across a border its counterpart. Membership
	// floods along these sessions to every ACS of the tree.
	tree, err := e.Topo.Tree()
	if err != nil {
		return nil, err
	}
	for _, o := range e.Topo.ABRs() {
		if o.Name != n.Name && o.ABR.ACS != "" && o.ABR.ASN != asn && tree.Adjacent(asn, o.ABR.ASN, e.Topo.ascnOf) {
			a.Peers = append(a.Peers, schema.ACSPeer{ASN: o.ABR.ASN, Address: o.ABR.ACS})
		}
	}
	return a, nil
}

// ascns lists the root community and every [[community]], root first.
func (t *Topology) ascns() []uint32 {
	out := []uint32{0}
	for _, c := range t.Communities {
		out = append(out, c.ASCN)
	}
	return out
}

// ACSNodes are the ABR nodes that run an ACS.
func (t *Topology) ACSNodes() []*Node {
	var out []*Node
	for _, n := range t.ABRs() {
		if n.ABR.ACS != "" {
			out = append(out, n)
		}
	}
	return out
}

// isPort reports whether interface ifname is one of the ABR's data ports.
func (a *ABR) isPort(ifname string) bool {
	for _, p := range a.Ports {
		if p.Interface == ifname {
			return true
		}
	}
	return false
}

// routed reports whether the ABR forwards routed (docs/wire.md §2.1): its ports
// then have addresses, like a router's.
func (a *ABR) routed() bool {
	return a.Engine.Forwarding == "routed"
}
