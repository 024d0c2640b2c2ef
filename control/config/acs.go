package config

import (
	"fmt"
	"time"

	"github.com/psavd/psavd/control/acs"
	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/pair"
)

// ACS is [acs] (docs/wire.md §4.1, plus membership_dir, record and
// [[acs.community]] of docs/config.md).
type ACS struct {
	Listen        string   // host:port
	Cert, Key, CA string   // PEM files (they exist)
	CRL           []string // revocation lists (they exist; read and checked by the node)
	Heartbeat     time.Duration
	DeadAfter     int
	KeyLead       int // epochs of keys ahead for the ABRs, 2 … 30, default DefaultKeyLead
	Peers         []ACSPeer
	MembershipDir string
	Record        string // this AS's own record to publish at start; "" none
	Limits        acs.Limits

	// Anchors are the keys that endorse membership records, by ASCN (0:
	// the flat alliance); Communities the community tree (docs/wire.md
	// §2.6): every [[acs.community]] but the root, checked by
	// membership.NewTree.
	Anchors     map[uint32][]membership.PublicKey
	Communities []membership.Community
	// Quotas are the members and prefixes quotas of every configured
	// community (membership.DefaultQuota where the keys are absent), for
	// membership.Policy.SetQuotas.
	Quotas map[uint32]membership.Quota
	// Members are the ASes pinned to a community by [[acs.community]]
	// members (ASN → ASCN), for membership.Policy.SetMembers.
	Members map[uint32]uint32
}

// ACSPeer is one [[acs.peer]].
type ACSPeer struct {
	ASN     uint32
	Address string // host:port
}

// Bounds of [acs]. A heartbeat below 100 ms would flood the peers (and
// 1 ns panics a ticker-driven session); above a minute a dead peer goes
// unnoticed for long. The heartbeat must also be shorter than an epoch, so
// that every epoch sees one. heartbeat × dead_after, the time to declare a
// peer dead, is not bound to the epoch: the key window (e−1 … e+2) carries
// tagging across a few epochs whatever it is.
const (
	MinHeartbeat = 100 * time.Millisecond
	MaxHeartbeat = time.Minute
	MaxDeadAfter = 100
	// DefaultKeyLead: ten epochs (ten minutes at the default P) ride out
	// an ACS restart and a reboot of its machine with no loss.
	DefaultKeyLead = 10
	// Bounds of [[acs.community]] max_members and max_prefixes: more ASes
	// than the 32-bit space sensibly holds in one community, more prefixes
	// than a global table.
	MaxCommunityMembers  = 1 << 20
	MaxCommunityPrefixes = 1 << 24
)

// communityQuota reads max_members or max_prefixes of [[acs.community]] i:
// def when absent, a written value (0 included) must be 1 … hi.
func (k *checker) communityQuota(i int, key string, v, def, hi int) int {
	acs, _ := k.doc["acs"].(map[string]any)
	ts, _ := acs["community"].([]map[string]any)
	if i >= len(ts) {
		return def
	}
	if _, ok := ts[i][key]; !ok {
		return def
	}
	if v < 1 || v > hi {
		k.add(fmt.Sprintf("acs.community[%d].%s", i, key), "must be 1 … %d, is %d", hi, v)
		return def
	}
	return v
}

func (c *Config) checkACS(k *checker, f *schema.File) {
	a := f.ACS
	if a == nil {
		return
	}
	t := &ACS{Listen: a.Listen, Cert: a.Cert, Key: a.Key, CA: a.CA, MembershipDir: a.MembershipDir, Record: a.Record, CRL: a.CRL,
		Anchors: map[uint32][]membership.PublicKey{}, Quotas: map[uint32]membership.Quota{}, Members: map[uint32]uint32{}}
	c.ACS = t
	k.hostPort("acs.listen", a.Listen)
	k.existingFile("acs.cert", a.Cert)
	k.privateKey("acs.key", a.Key)
	k.existingFile("acs.ca", a.CA)
	for i, f := range a.CRL {
		k.existingFile(fmt.Sprintf("acs.crl[%d]", i), f)
	}
	t.Heartbeat = k.duration("acs.heartbeat", a.Heartbeat, time.Second, MinHeartbeat, MaxHeartbeat)
	if p := time.Duration(c.PSAV.EpochSeconds) * time.Second; p > 0 && t.Heartbeat >= p {
		k.add("acs.heartbeat", "%s is not shorter than an epoch (psav.epoch_seconds = %d): every epoch needs a heartbeat", shortDuration(t.Heartbeat), c.PSAV.EpochSeconds)
	}
	t.KeyLead = orDefault(k.set("acs.key_lead"), a.KeyLead, DefaultKeyLead)
	if t.KeyLead < pair.MinKeyLead || t.KeyLead > pair.MaxKeyLead {
		k.add("acs.key_lead", "must be %d … %d epochs, is %d", pair.MinKeyLead, pair.MaxKeyLead, t.KeyLead)
	}
	t.DeadAfter = orDefault(k.set("acs.dead_after"), a.DeadAfter, 3)
	if t.DeadAfter < 1 {
		k.add("acs.dead_after", "must be at least 1")
	} else if t.DeadAfter > MaxDeadAfter {
		k.add("acs.dead_after", "must be at most %d, is %d", MaxDeadAfter, t.DeadAfter)
	}
	d := acs.DefaultLimits
	t.Limits = acs.Limits{
		MaxConns:          orDefault(k.set("acs.max_connections"), a.MaxConnections, d.MaxConns),
		MaxConnsPerSource: orDefault(k.set("acs.max_connections_per_source"), a.MaxConnectionsPerSource, d.MaxConnsPerSource),
		HandshakeTimeout:  k.duration("acs.handshake_timeout", a.HandshakeTimeout, d.HandshakeTimeout, 100*time.Millisecond, time.Minute),
		HelloTimeout:      k.duration("acs.hello_timeout", a.HelloTimeout, d.HelloTimeout, 100*time.Millisecond, time.Minute),
	}
	if t.Limits.MaxConns < 1 || t.Limits.MaxConns > 65536 {
		k.add("acs.max_connections", "must be 1 … 65536, is %d", t.Limits.MaxConns)
	}
	if t.Limits.MaxConnsPerSource < 1 || t.Limits.MaxConnsPerSource > t.Limits.MaxConns {
		k.add("acs.max_connections_per_source", "must be 1 … max_connections (%d), is %d", t.Limits.MaxConns, t.Limits.MaxConnsPerSource)
	}
	for i, p := range a.Peers {
		if p.ASN == 0 {
			k.add(fmt.Sprintf("acs.peer[%d].asn", i), "missing")
		} else if p.ASN == f.PSAV.ASN {
			k.add(fmt.Sprintf("acs.peer[%d].asn", i), "is this AS itself")
		}
		k.hostPort(fmt.Sprintf("acs.peer[%d].address", i), p.Address)
		t.Peers = append(t.Peers, ACSPeer{ASN: p.ASN, Address: p.Address})
	}
	if a.MembershipDir == "" {
		k.add("acs.membership_dir", "missing (a directory where membership records are kept across restarts)")
	}
	if a.Record != "" {
		k.existingFile("acs.record", a.Record)
	}
	if len(a.Communities) == 0 {
		k.add("acs.community", "missing: at least one [[acs.community]] with the keys that endorse membership records")
	}
	seen := map[uint32]bool{}
	for _, cm := range a.Communities {
		seen[cm.ASCN] = true
	}
	treeOK := true
	for i, cm := range a.Communities {
		if len(cm.Keys) == 0 {
			k.add(fmt.Sprintf("acs.community[%d].keys", i), "missing")
		}
		for j := 0; j < i; j++ {
			if a.Communities[j].ASCN == cm.ASCN {
				k.add(fmt.Sprintf("acs.community[%d].ascn", i), "community %d is given twice (also acs.community[%d])", cm.ASCN, j)
				treeOK = false
			}
		}
		f := func(key string) string { return fmt.Sprintf("acs.community[%d].%s", i, key) }
		if cm.ASCN == 0 {
			if cm.Parent != 0 || cm.Border != 0 || cm.ParentPeer != 0 {
				k.add(f("ascn"), "community 0 is the root of the tree: it takes no parent, border or parent_peer")
				treeOK = false
			}
		} else {
			if !seen[cm.Parent] {
				k.add(f("parent"), "community %d is not configured: add its [[acs.community]] with the keys that endorse its members", cm.Parent)
				treeOK = false
			}
			if cm.Border == 0 {
				k.add(f("border"), "missing: the AS of community %d that holds the key to its parent community", cm.ASCN)
				treeOK = false
			}
			if cm.ParentPeer == 0 {
				k.add(f("parent_peer"), "missing: the AS of community %d that holds the key with the border", cm.Parent)
				treeOK = false
			}
			t.Communities = append(t.Communities, membership.Community{ASCN: cm.ASCN, Parent: cm.Parent, Border: cm.Border, ParentPeer: cm.ParentPeer})
		}
		t.Quotas[cm.ASCN] = membership.Quota{
			MaxMembers:  k.communityQuota(i, "max_members", cm.MaxMembers, membership.DefaultMaxMembers, MaxCommunityMembers),
			MaxPrefixes: k.communityQuota(i, "max_prefixes", cm.MaxPrefixes, membership.DefaultMaxPrefixes, MaxCommunityPrefixes),
		}
		for j, asn := range cm.Members {
			key := fmt.Sprintf("acs.community[%d].members[%d]", i, j)
			if asn == 0 {
				k.add(key, "ASN 0 is reserved")
			} else if prev, dup := t.Members[asn]; dup {
				k.add(key, "AS%d is listed twice (also under community %d): an AS belongs to one community", asn, prev)
			} else {
				t.Members[asn] = cm.ASCN
			}
		}
		for j, key := range cm.Keys {
			pk, err := membership.ParsePublicKey(key)
			if err != nil {
				k.add(fmt.Sprintf("acs.community[%d].keys[%d]", i, j), "%v", err)
				continue
			}
			t.Anchors[cm.ASCN] = append(t.Anchors[cm.ASCN], pk)
		}
	}
	if treeOK {
		if _, err := membership.NewTree(t.Communities); err != nil {
			k.add("acs.community", "%v", err)
		}
	}
	if len(f.PSAV.StaticPeers) > 0 {
		k.add("psav.static_peer", "an ACS negotiates its keys: remove the static peers")
	}
}
