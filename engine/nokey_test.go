package engine

import (
	"bytes"
	"testing"
)

// A member whose keys are gone (no state machine, or none for e−1 … e+1)
// is treated as not a member by default (docs/wire.md §2.8): its packets
// are forwarded and counted unverifiable, a tag they carry removed byte
// for byte. With Policy.FailClosed they are dropped: no-tag, or no-key for
// a tagged one.
func TestMemberWithoutKeys(t *testing.T) {
	tagged, plain := mustHex(t, v4Out), mustHex(t, v4In)
	unkeyed := func(failClosed bool, now int64) *Engine {
		e, err := New(Spec{Policy: Policy{FailClosed: failClosed},
			Ports: []PortSpec{{Name: "inside", Role: RoleIngress, Peer: 1}, {Name: "outside", Role: RoleEgress, Peer: 0}}})
		if err != nil {
			t.Fatal(err)
		}
		tb := testTables(t, 65002, vecNow)
		if now == 0 { // no state machine at all
			tb.Peers = nil
			for i := range tb.Members {
				tb.Members[i].TagPeer, tb.Members[i].ValidatePeer = -1, -1
			}
		}
		e.Publish(tb)
		return e
	}
	// testTables holds a whole window of keys from e−1 around vecNow:
	// KeyWindow+2 epochs later none is usable.
	later := int64(vecNow + (KeyWindow+2)*vecPeriod)
	for _, c := range []struct {
		name string
		now  int64
	}{{"no state machine", 0}, {"keys past", later}} {
		at := c.now
		if at == 0 {
			at = vecNow
		}
		t.Run(c.name, func(t *testing.T) {
			out, pr := run(t, unkeyed(false, c.now), 1, tagged, at)
			if out == nil || pr.Counters.Actions[ActUnverifiable].Load() != 1 {
				t.Fatalf("tagged: dropped %v, want forwarded unverifiable", drops(pr))
			}
			if !bytes.Equal(out[14:], plain[14:]) {
				t.Fatalf("tag not stripped byte for byte:\n% x\n% x", out, plain)
			}
			if out, pr := run(t, unkeyed(false, c.now), 1, plain, at); out == nil || pr.Counters.Actions[ActUnverifiable].Load() != 1 {
				t.Fatalf("untagged: dropped %v", drops(pr))
			}
			if out, pr := run(t, unkeyed(true, c.now), 1, plain, at); out != nil || pr.Counters.Drops[DropNoTag].Load() != 1 {
				t.Fatalf("fail closed, untagged: %v", drops(pr))
			}
			want := DropNoKey
			if c.now != 0 {
				want = DropStaleEpoch // a state machine, but no key for the tag's epoch
			}
			if out, pr := run(t, unkeyed(true, c.now), 1, tagged, at); out != nil || pr.Counters.Drops[want].Load() != 1 {
				t.Fatalf("fail closed, tagged: %v, want %s", drops(pr), want)
			}
		})
	}
}
