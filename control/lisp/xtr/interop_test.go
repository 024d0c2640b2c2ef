package xtr

import (
	"net/netip"
	"testing"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/engine"
)

// TestITRRefusesOverclaim (issue 16): a Map-Reply record that does not
// cover the EID asked for — or claims the whole address space with
// locators — is refused and counted (psavd_lisp_xtr_itr_total{event=
// "overclaim"}); other destinations keep missing. A covering record in the
// same reply is taken; a negative 0.0.0.0/0 is taken.
func TestITRRefusesOverclaim(t *testing.T) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := itrFor(t, &misses, &pub, nil)
	eid := netip.MustParseAddr("10.9.9.9")
	misses = []engine.Miss{{Addr: eid}}
	out := x.Tick(t0)
	if len(out) != 1 {
		t.Fatalf("%d requests", len(out))
	}
	loc := []lisp.Locator{{Priority: 1, Weight: 1, Reachable: true, Address: lisp.IPAddr(rloc)}}
	recs := []lisp.MappingRecord{
		{TTL: 10, EIDMaskLen: 0, EID: lisp.IPAddr(netip.MustParseAddr("0.0.0.0")), Locators: loc},   // takes over everything
		{TTL: 10, EIDMaskLen: 8, EID: lisp.IPAddr(netip.MustParseAddr("8.0.0.0")), Locators: loc},   // not the EID asked for
		{TTL: 10, EIDMaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("10.9.9.0")), Locators: loc}, // the answer
	}
	b, err := lisp.Marshal(&lisp.MapReply{Nonce: requestNonce(t, out[0]), Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	x.Handle(b, out[0].To, t0)
	if st := x.Stats(); st.Overclaims != 2 || st.Replies != 1 {
		t.Fatalf("stats %+v, want 2 overclaims", st)
	}
	if e, ok := x.Lookup(0, eid, t0); !ok || e.EID != pfx("10.9.9.0/24") {
		t.Fatalf("covering record not taken: %+v %v", e, ok)
	}
	for _, a := range []string{"8.8.8.8", "192.0.2.77"} {
		if e, ok := x.Lookup(0, netip.MustParseAddr(a), t0); ok {
			t.Fatalf("%s resolved by an overclaiming record %+v", a, e)
		}
	}
	// A negative /0 (nothing is LISP here) is legitimate.
	misses = []engine.Miss{{Addr: netip.MustParseAddr("8.8.8.8")}}
	out = x.Tick(t0)
	b, _ = lisp.Marshal(&lisp.MapReply{Nonce: requestNonce(t, out[0]), Records: []lisp.MappingRecord{
		{TTL: 15, EIDMaskLen: 0, Action: lisp.ActionNativelyForward, EID: lisp.IPAddr(netip.MustParseAddr("0.0.0.0"))}}})
	x.Handle(b, out[0].To, t0)
	if _, ok := x.Lookup(0, netip.MustParseAddr("8.8.8.8"), t0); !ok || x.Stats().Overclaims != 2 {
		t.Fatalf("negative /0 refused: %+v", x.Stats())
	}
}

// TestETRProbeReply (issue 16): a plain Map-Request with the P bit (an
// RLOC-probe, as OOR sends every 30 s) is answered with a Map-Reply with P
// set and the probed locator's p bit, so the prober keeps the RLOC up; a
// plain request without P gets neither.
func TestETRProbeReply(t *testing.T) {
	x := newXTR(t, Config{RLOCs: []netip.Addr{rloc}, Database: etrDatabase()})
	for _, probe := range []bool{true, false} {
		b, err := lisp.Marshal(&lisp.MapRequest{Probe: probe, Nonce: 42, ITRRLOCs: []lisp.Address{lisp.IPAddr(netip.MustParseAddr("198.51.100.9"))},
			Records: []lisp.EIDRecord{{MaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("203.0.113.0"))}}})
		if err != nil {
			t.Fatal(err)
		}
		out := x.Handle(b, netip.MustParseAddrPort("198.51.100.9:4342"), t0)
		if len(out) != 1 {
			t.Fatalf("probe %v: %d answers", probe, len(out))
		}
		r, err := lisp.ParseMapReply(out[0].Data)
		if err != nil || r.Nonce != 42 || r.Probe != probe || len(r.Records) != 1 || r.Records[0].Locators[0].Probed != probe {
			t.Fatalf("probe %v: reply %+v %v", probe, r, err)
		}
	}
}
