package abr

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/engine"
)

// The vectors of engine/engine_test.go: S(e0) = 00 01 … 1f, e0 = 29000000,
// packets tagged in epoch e0+5 by AS 65001 for AS 65002 (T0 = 0, P = 60).
const (
	vecE0     = 29000000
	vecEpoch  = vecE0 + 5
	vecPeriod = 60
	vecNow    = vecEpoch*vecPeriod + 30
	vecKeyE5  = "7fd7fd395e6324237a09864232e2b831"
	v4In      = "020000000002020000000001080045000025123400004011024cc633640acb00710a1092003500110000707361762074657374"
	v4Out     = "020000000002020000000001080049000035123400004011496cc633640acb00710a9e0e7100c6abe194f26dc4f8451801011092003500110000707361762074657374"
)

func vecState() engine.State {
	var s engine.State
	for i := range s {
		s[i] = byte(i)
	}
	return s
}

// vecKeys returns K(e−1) … K(e+2) around now from the vector state machine.
func vecKeys(t testing.TB, now int64) []*acspb.EpochKey {
	t.Helper()
	e := engine.Epoch(now, 0, vecPeriod)
	keys, ok := engine.NewStateMachine(vecE0, vecState()).Window(uint64(e-1), engine.KeyWindow)
	if !ok {
		t.Fatal("window")
	}
	var out []*acspb.EpochKey
	for i, k := range keys {
		out = append(out, &acspb.EpochKey{Epoch: e - 1 + int64(i), Key: append([]byte(nil), k[:]...)})
	}
	return out
}

func pfx(s string) *acspb.Prefix {
	p := netip.MustParsePrefix(s)
	return &acspb.Prefix{Addr: p.Addr().AsSlice(), Bits: uint32(p.Bits())}
}

// snapshot is the two-AS alliance of the vectors as the ACS of local pushes
// it to its ABR: 65001 (198.51.100.0/24, 2001:db8:1::/48) and 65002
// (203.0.113.0/24, 2001:db8:2::/48), one peer (the other AS) with keys for
// e−1 … e+2 around now.
func snapshot(t testing.TB, version uint64, local uint32, now int64) *acspb.Tables {
	t.Helper()
	remote := uint32(65002)
	if local == 65002 {
		remote = 65001
	}
	m := &acspb.Tables{
		Version: version, T0: 0, PeriodSeconds: vecPeriod, LocalAsn: local,
		Members: []*acspb.Member{
			{Asn: 65001, Local: local == 65001, Prefixes: []*acspb.Prefix{pfx("198.51.100.0/24"), pfx("2001:db8:1::/48")}, TagPeer: -1, ValidatePeer: -1},
			{Asn: 65002, Local: local == 65002, Prefixes: []*acspb.Prefix{pfx("203.0.113.0/24"), pfx("2001:db8:2::/48")}, TagPeer: -1, ValidatePeer: -1},
		},
		Peers: []*acspb.PeerKeys{{Asn: remote, Keys: vecKeys(t, now)}},
	}
	r := m.Members[remote-65001]
	r.TagPeer, r.ValidatePeer = 0, 0
	return m
}

func TestConvertValid(t *testing.T) {
	m := snapshot(t, 7, 65001, vecNow)
	m.Replace = []*acspb.Replace{{SrcMember: 1, DstMember: 0, InPeer: 0, OutPeer: -1}}
	tb, err := Convert(m)
	if err != nil {
		t.Fatal(err)
	}
	if tb.Version != 7 || tb.T0 != 0 || tb.Period != vecPeriod {
		t.Fatalf("clock/version: %+v", tb)
	}
	want := []engine.Member{{ASN: 65001, Local: true, TagPeer: -1, ValidatePeer: -1}, {ASN: 65002, TagPeer: 0, ValidatePeer: 0}}
	if len(tb.Members) != len(want) {
		t.Fatalf("members %+v", tb.Members)
	}
	for i := range want {
		if tb.Members[i] != want[i] {
			t.Errorf("member %d = %+v, want %+v", i, tb.Members[i], want[i])
		}
	}
	if len(tb.Peers) != 1 || tb.Peers[0].ASN != 65002 {
		t.Fatalf("peers %+v", tb.Peers)
	}
	for _, k := range m.Peers[0].Keys {
		k0, k1, ok := tb.Peers[0].Key(k.Epoch)
		w0, w1 := engine.Key(k.Key).Halves()
		if !ok || k0 != w0 || k1 != w1 {
			t.Errorf("key of epoch %d: %x %x %v", k.Epoch, k0, k1, ok)
		}
	}
	// The vector's key is among them.
	var k5 engine.Key
	for _, k := range m.Peers[0].Keys {
		if k.Epoch == vecEpoch {
			k5 = engine.Key(k.Key)
		}
	}
	if hex.EncodeToString(k5[:]) != vecKeyE5 {
		t.Fatalf("K(e0+5) = %x, want %s", k5, vecKeyE5)
	}
	if _, _, ok := tb.Peers[0].Key(vecEpoch - 1 + engine.KeyWindow); ok {
		t.Error("key beyond the window")
	}
	for addr, member := range map[string]uint32{"198.51.100.7": 0, "2001:db8:1::5": 0, "203.0.113.200": 1, "2001:db8:2:ffff::1": 1} {
		v, ok := tb.Prefixes.Lookup(netip.MustParseAddr(addr))
		if !ok || v>>8 != member {
			t.Errorf("%s → %x %v, want member %d", addr, v, ok, member)
		}
	}
	if _, ok := tb.Prefixes.Lookup(netip.MustParseAddr("192.0.2.1")); ok {
		t.Error("192.0.2.1 matched")
	}
	if re, ok := tb.Replace[engine.ReplaceKey(1, 0)]; !ok || re != (engine.ReplaceEntry{In: 0, Out: -1}) {
		t.Errorf("replace %+v", tb.Replace)
	}
	// Fewer keys than the window, and a peer with none, are fine.
	m = snapshot(t, 1, 65001, vecNow)
	m.Peers[0].Keys = m.Peers[0].Keys[1:2]
	m.Peers = append(m.Peers, &acspb.PeerKeys{Asn: 65003})
	if _, err := Convert(m); err != nil {
		t.Fatal(err)
	}
}

func TestConvertRefuses(t *testing.T) {
	cases := []struct {
		name, want string
		mut        func(m *acspb.Tables)
	}{
		{"nil", "no tables", nil},
		{"version 0", "version", func(m *acspb.Tables) { m.Version = 0 }},
		{"negative t0", "t0", func(m *acspb.Tables) { m.T0 = -1 }},
		{"zero period", "period_seconds", func(m *acspb.Tables) { m.PeriodSeconds = 0 }},
		{"negative period", "period_seconds", func(m *acspb.Tables) { m.PeriodSeconds = -60 }},
		{"no local asn", "local_asn", func(m *acspb.Tables) { m.LocalAsn = 0 }},
		{"short key", "peers[0].keys[1].key: 15 octets", func(m *acspb.Tables) { m.Peers[0].Keys[1].Key = m.Peers[0].Keys[1].Key[:15] }},
		{"long key", "peers[0].keys[0].key: 17 octets", func(m *acspb.Tables) { m.Peers[0].Keys[0].Key = append(m.Peers[0].Keys[0].Key, 0) }},
		{"negative epoch", "peers[0].keys[0].epoch", func(m *acspb.Tables) { m.Peers[0].Keys[0].Epoch = -1 }},
		{"too many keys", fmt.Sprintf("%d keys", engine.KeyWindow+1), func(m *acspb.Tables) {
			m.Peers[0].Keys = append(m.Peers[0].Keys, &acspb.EpochKey{Epoch: vecEpoch + engine.KeyWindow, Key: make([]byte, 16)})
		}},
		{"keys beyond one window", "do not fit one window", func(m *acspb.Tables) {
			m.Peers[0].Keys[engine.KeyWindow-1].Epoch = vecEpoch - 1 + engine.KeyWindow
		}},
		{"duplicate epoch", "given twice", func(m *acspb.Tables) { m.Peers[0].Keys[3].Epoch = m.Peers[0].Keys[2].Epoch }},
		{"nil key", "peers[0].keys[2]: empty", func(m *acspb.Tables) { m.Peers[0].Keys[2] = nil }},
		{"nil peer", "peers[0]: empty", func(m *acspb.Tables) { m.Peers[0] = nil }},
		{"peer asn 0", "peers[0].asn: is 0", func(m *acspb.Tables) { m.Peers[0].Asn = 0 }},
		{"peer is local", "local AS", func(m *acspb.Tables) { m.Peers[0].Asn = 65001 }},
		{"duplicate peer", "peers[1].asn", func(m *acspb.Tables) { m.Peers = append(m.Peers, &acspb.PeerKeys{Asn: 65002}) }},
		{"tag peer out of range", "members[1].tag_peer", func(m *acspb.Tables) { m.Members[1].TagPeer = 1 }},
		{"tag peer below -1", "members[1].tag_peer", func(m *acspb.Tables) { m.Members[1].TagPeer = -2 }},
		{"validate peer out of range", "members[1].validate_peer", func(m *acspb.Tables) { m.Members[1].ValidatePeer = 5 }},
		{"nil member", "members[0]: empty", func(m *acspb.Tables) { m.Members[0] = nil }},
		{"member asn 0", "members[1].asn", func(m *acspb.Tables) { m.Members[1].Asn = 0 }},
		{"duplicate member", "members[1].asn", func(m *acspb.Tables) { m.Members[1].Asn = 65001 }},
		{"no local member", "no member is the local", func(m *acspb.Tables) { m.LocalAsn = 65009; m.Members[0].Local = false }},
		{"local flag missing", "not marked local", func(m *acspb.Tables) { m.Members[0].Local = false }},
		{"two local members", "members[1].local", func(m *acspb.Tables) { m.Members[1].Local = true }},
		{"address length", "address of 5 octets", func(m *acspb.Tables) { m.Members[0].Prefixes[0].Addr = []byte{1, 2, 3, 4, 5} }},
		{"empty address", "address of 0 octets", func(m *acspb.Tables) { m.Members[0].Prefixes[0].Addr = nil }},
		{"v4 bits", "33 bits", func(m *acspb.Tables) { m.Members[0].Prefixes[0].Bits = 33 }},
		{"v6 bits", "129 bits", func(m *acspb.Tables) { m.Members[0].Prefixes[1].Bits = 129 }},
		{"host bits", "host bits", func(m *acspb.Tables) { m.Members[0].Prefixes[0] = pfx("198.51.100.1/24") }},
		{"v4-mapped", "IPv4-mapped", func(m *acspb.Tables) {
			m.Members[0].Prefixes[0] = &acspb.Prefix{Addr: netip.MustParseAddr("::ffff:198.51.100.0").AsSlice(), Bits: 120}
		}},
		{"nil prefix", "members[0].prefixes[1]: empty", func(m *acspb.Tables) { m.Members[0].Prefixes[1] = nil }},
		{"prefix of two members", "members[1].prefixes[2]: 198.51.100.0/24 already belongs to members[0]", func(m *acspb.Tables) {
			m.Members[1].Prefixes = append(m.Members[1].Prefixes, pfx("198.51.100.0/24"))
		}},
		{"prefix twice", "members[0].prefixes[2]", func(m *acspb.Tables) {
			m.Members[0].Prefixes = append(m.Members[0].Prefixes, pfx("2001:db8:1::/48"))
		}},
		{"replace src", "replace[0].src_member", func(m *acspb.Tables) {
			m.Replace = []*acspb.Replace{{SrcMember: 2, DstMember: 0, InPeer: -1, OutPeer: -1}}
		}},
		{"replace dst", "replace[0].dst_member", func(m *acspb.Tables) {
			m.Replace = []*acspb.Replace{{SrcMember: 0, DstMember: 1 << 31, InPeer: -1, OutPeer: -1}}
		}},
		{"replace in peer", "replace[0].in_peer", func(m *acspb.Tables) {
			m.Replace = []*acspb.Replace{{SrcMember: 0, DstMember: 1, InPeer: 1, OutPeer: -1}}
		}},
		{"replace out peer", "replace[0].out_peer", func(m *acspb.Tables) {
			m.Replace = []*acspb.Replace{{SrcMember: 0, DstMember: 1, InPeer: 0, OutPeer: -3}}
		}},
		{"replace twice", "replace[1]: pair (0, 1) given twice", func(m *acspb.Tables) {
			m.Replace = []*acspb.Replace{{SrcMember: 0, DstMember: 1, InPeer: 0, OutPeer: -1}, {SrcMember: 0, DstMember: 1, InPeer: -1, OutPeer: 0}}
		}},
		{"nil replace", "replace[0]: empty", func(m *acspb.Tables) { m.Replace = []*acspb.Replace{nil} }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var m *acspb.Tables
			if c.mut != nil {
				m = snapshot(t, 1, 65001, vecNow)
				c.mut(m)
			}
			tb, err := Convert(m)
			if err == nil {
				t.Fatalf("accepted: %+v", tb)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
			if tb != nil {
				t.Fatal("tables returned with an error")
			}
		})
	}
}

// FuzzConvert: Convert never panics on any bytes that unmarshal, and what it
// accepts is consistent with the engine's invariants.
func FuzzConvert(f *testing.F) {
	seed := func(m *acspb.Tables) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	m := snapshot(f, 1, 65001, vecNow)
	seed(m)
	m.Replace = []*acspb.Replace{{SrcMember: 1, DstMember: 0, InPeer: 0, OutPeer: -1}}
	seed(m)
	seed(snapshot(f, 2, 65002, vecNow))
	m = snapshot(f, 3, 65001, vecNow)
	m.Members[0].Prefixes[0].Bits = 33
	seed(m)
	m = snapshot(f, 3, 65001, vecNow)
	m.Peers[0].Keys[0].Epoch = -5
	seed(m)
	m = snapshot(f, 3, 65001, vecNow)
	m.Members[1].TagPeer = 7
	seed(m)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m acspb.Tables
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		tb, err := Convert(&m)
		if err != nil {
			if tb != nil {
				t.Fatal("tables with an error")
			}
			return
		}
		if tb.Period <= 0 || tb.T0 < 0 || tb.Prefixes == nil {
			t.Fatalf("accepted bad clock %+v", tb)
		}
		local := 0
		for _, mm := range tb.Members {
			if mm.Local {
				local++
			}
			if mm.TagPeer < -1 || int(mm.TagPeer) >= len(tb.Peers) || mm.ValidatePeer < -1 || int(mm.ValidatePeer) >= len(tb.Peers) {
				t.Fatalf("peer index out of range: %+v", mm)
			}
		}
		if local != 1 {
			t.Fatalf("%d local members", local)
		}
		for i, p := range m.GetPeers() {
			for _, k := range p.GetKeys() {
				if _, _, ok := tb.Peers[i].Key(k.GetEpoch()); !ok {
					t.Fatalf("key of epoch %d lost", k.GetEpoch())
				}
			}
		}
	})
}
