package static

import (
	"encoding/hex"
	"testing"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/engine"
)

const cfg = `
[psav]
asn = 65001
epoch_seconds = 60
t0 = 0
[[psav.member]]
asn = 65001
prefixes = ["198.51.100.0/24"]
[[psav.member]]
asn = 65002
prefixes = ["203.0.113.0/24"]
[[psav.member]]
asn = 65003
prefixes = ["192.0.2.0/24"]
[[psav.static_peer]]
asn = 65002
start_epoch = 29000000
s0 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
[[port]]
name = "inside"
interface = "in"
role = "ingress"
peer = "outside"
[[port]]
name = "outside"
interface = "out"
role = "egress"
peer = "inside"
`

// K(e0) and K(e0+5) from engine/testdata/vectors.py.
const keyE0, keyE5 = "3a961b7e8b9cf6199e1b69bb275b9fbb", "7fd7fd395e6324237a09864232e2b831"

func TestScheduleWindow(t *testing.T) {
	c, err := config.Parse("t.toml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(c.PSAV)
	if err != nil {
		t.Fatal(err)
	}
	want := func(hexKey string) (uint64, uint64) {
		var k engine.Key
		b, _ := hex.DecodeString(hexKey)
		copy(k[:], b)
		return k.Halves()
	}
	// At e0+4 the window is e0+3 … e0+6: e0+5 is in it, with the spec's key.
	tb := s.At((29000000+4)*60 + 1)
	if len(tb.Peers) != 1 || tb.Peers[0].ASN != 65002 {
		t.Fatalf("peers %+v", tb.Peers)
	}
	k0, k1, ok := tb.Peers[0].Key(29000005)
	w0, w1 := want(keyE5)
	if !ok || k0 != w0 || k1 != w1 {
		t.Fatalf("K(e0+5) wrong or missing")
	}
	for _, e := range []int64{29000003, 29000004, 29000006} {
		if _, _, ok := tb.Peers[0].Key(e); !ok {
			t.Errorf("epoch %d missing from the window", e)
		}
	}
	if _, _, ok := tb.Peers[0].Key(29000007); ok {
		t.Error("e+3 in the window")
	}
	// Members: 65002 has the state machine, 65003 none; 65001 is local.
	if !tb.Members[0].Local || tb.Members[1].TagPeer != 0 || tb.Members[2].TagPeer != -1 {
		t.Fatalf("members %+v", tb.Members)
	}

	// A fresh schedule at e0 (window clipped at e0: no keys before it).
	s, _ = New(c.PSAV)
	tb = s.At(29000000*60 + 1)
	k0, k1, ok = tb.Peers[0].Key(29000000)
	w0, w1 = want(keyE0)
	if !ok || k0 != w0 || k1 != w1 {
		t.Fatal("K(e0) wrong or missing")
	}
	if _, _, ok := tb.Peers[0].Key(29000000 - 1); ok {
		t.Fatal("a key before e0")
	}
	// Before e0 the peer has no keys at all.
	s, _ = New(c.PSAV)
	tb = s.At(28000000 * 60)
	if _, _, ok := tb.Peers[0].Key(28000000); ok {
		t.Fatal("keys long before e0")
	}
	if tb.Version == 0 {
		t.Fatal("snapshots must be versioned")
	}
}
