package abr

import (
	"testing"

	"github.com/psavd/psavd/engine"
)

func key(b byte) engine.Key {
	var k engine.Key
	for i := range k {
		k[i] = b
	}
	return k
}

func tablesWith(peer bool, epochs ...int64) *engine.Tables {
	t := &engine.Tables{Version: 1, Period: 60, Members: []engine.Member{
		{ASN: 65001, Local: true, TagPeer: -1, ValidatePeer: -1},
		{ASN: 65002, TagPeer: -1, ValidatePeer: -1},
	}}
	if peer {
		t.Peers = []engine.PeerKeys{{ASN: 65002}}
		for _, e := range epochs {
			t.Peers[0].SetKey(e, key(byte(e)))
		}
		t.Members[1].TagPeer, t.Members[1].ValidatePeer = 0, 0
	}
	return t
}

// A restarted ACS's first snapshot names no peer: the data plane keeps the
// keys it holds for this epoch on (make before break), tags and validates
// with them, and drops only what is past.
func TestMergeKeepsKeysASnapshotOmits(t *testing.T) {
	const now = 100
	prev := tablesWith(true, now-2, now-1, now, now+1)
	next := Merge(prev, tablesWith(false), now)
	if len(next.Peers) != 1 || next.Peers[0].ASN != 65002 {
		t.Fatalf("peers %+v", next.Peers)
	}
	for _, e := range []int64{now - 1, now, now + 1} {
		if _, _, ok := next.Peers[0].Key(e); !ok {
			t.Fatalf("key of epoch %d lost", e)
		}
	}
	if _, _, ok := next.Peers[0].Key(now - 2); ok {
		t.Fatal("a past epoch's key carried over")
	}
	if m := next.Members[1]; m.TagPeer != 0 || m.ValidatePeer != 0 {
		t.Fatalf("member lost its peer: %+v", m)
	}
	if prev.Peers[0].ASN != 65002 || len(prev.Members) != 2 {
		t.Fatal("prev modified")
	}
}

// A key the new snapshot gives for an epoch wins (a re-key at a boundary);
// the epochs it omits are filled from the previous one.
func TestMergeNewKeyWins(t *testing.T) {
	const now = 100
	prev := tablesWith(true, now, now+1, now+2)
	next := tablesWith(true, now+2)
	next.Peers[0].SetKey(now+2, key(0xee))
	m := Merge(prev, next, now)
	k0, _, ok := m.Peers[0].Key(now + 2)
	if !ok || k0 != 0xeeeeeeeeeeeeeeee {
		t.Fatalf("re-keyed epoch: %x %v", k0, ok)
	}
	for _, e := range []int64{now, now + 1} {
		if _, _, ok := m.Peers[0].Key(e); !ok {
			t.Fatalf("key of epoch %d not filled in", e)
		}
	}
}

// A new epoch clock (T0 or P changed) takes nothing from the old one.
func TestMergeNewClock(t *testing.T) {
	prev := tablesWith(true, 100, 101)
	next := tablesWith(false)
	next.Period = 30
	if m := Merge(prev, next, 100); len(m.Peers) != 0 {
		t.Fatalf("keys of another clock carried over: %+v", m.Peers)
	}
}
