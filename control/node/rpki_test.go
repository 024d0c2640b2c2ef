package node

import (
	"net/netip"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/rpki"
)

// gateSet is a membership set holding a join of AS65001 (192.0.2.0/24),
// endorsed by community 0.
func gateSet(t *testing.T) (*membership.Set, func(asn uint32, ver uint64, prefix string) membership.Record) {
	t.Helper()
	community, err := membership.NewEd25519SignerFromSeed(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	policy, err := membership.NewPolicy(map[uint32][]membership.PublicKey{0: {community.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(asn uint32, ver uint64, prefix string) membership.Record {
		seed := make([]byte, 32)
		seed[0], seed[1] = byte(asn>>8), byte(asn)
		as, err := membership.NewEd25519SignerFromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		r := membership.Record{Kind: membership.KindJoin, ASN: asn, Version: ver, Key: as.Public(),
			Prefixes: []netip.Prefix{netip.MustParsePrefix(prefix)}, ACS: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:7443")}}
		r.Canonicalize()
		if err := r.Sign(as); err != nil {
			t.Fatal(err)
		}
		if err := r.Endorse(community); err != nil {
			t.Fatal(err)
		}
		return r
	}
	set := membership.NewSet(policy)
	if _, err := set.Apply(rec(65001, 1, "192.0.2.0/24")); err != nil {
		t.Fatal(err)
	}
	return set, rec
}

// Without RPKI data (the cache never answered): fail_closed takes the held
// record out of force at once and refuses a new one; fail_open keeps it,
// accepts the new one and counts both as unvouched for.
func TestRPKIGateWithoutData(t *testing.T) {
	for _, policy := range []config.RPKIPolicy{config.RPKIFailClosed, config.RPKIFailOpen} {
		set, rec := gateSet(t)
		c := &config.Config{File: "t.toml", RPKI: &config.RPKI{Server: "127.0.0.1:1", Policy: policy}}
		g, err := newRPKI(c, set, zap.NewNop())
		if err != nil {
			t.Fatal(err)
		}
		g.waited.Store(true) // the start-up wait is not what this tests
		_, err = set.Apply(rec(65002, 1, "198.51.100.0/24"))
		g.revalidate()
		switch policy {
		case config.RPKIFailClosed:
			if len(set.Records()) != 0 || g.aside != 1 || membership.ReasonOf(err) != membership.ReasonRPKIUncovered {
				t.Errorf("fail_closed: records %v, aside %d, new record %v", set.Records(), g.aside, err)
			}
		case config.RPKIFailOpen:
			if len(set.Records()) != 2 || g.aside != 0 || len(g.uncovered) != 2 || err != nil {
				t.Errorf("fail_open: records %v, uncovered %v, new record %v", set.Records(), g.uncovered, err)
			}
		}
	}
}

// judge with data: covered is nil, an uncovered prefix is named, whatever
// the policy.
func TestRPKIJudge(t *testing.T) {
	v := rpki.NewValidator([]rpki.VRP{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), MaxLen: 24, ASN: 65001}})
	for _, policy := range []config.RPKIPolicy{config.RPKIFailClosed, config.RPKIFailOpen} {
		if err := judge(v, policy, 65001, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}); err != nil {
			t.Errorf("%s: covered refused: %v", policy, err)
		}
		err := judge(v, policy, 65002, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
		if err == nil || !strings.Contains(err.Error(), "not covered") {
			t.Errorf("%s: wrong ASN accepted", policy)
		}
	}
	if judge(nil, config.RPKIFailOpen, 65001, nil) != nil || judge(nil, config.RPKIFailClosed, 65001, nil) == nil {
		t.Error("no data: fail_open must accept, fail_closed refuse")
	}
}
