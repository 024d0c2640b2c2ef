package xtr

import (
	"net/netip"
	"testing"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/engine"
)

var (
	locA = netip.MustParseAddr("198.51.100.7") // priority 1
	locB = netip.MustParseAddr("198.51.100.8") // priority 2
)

// resolve makes x (an itrFor ITR) cache 10.9.1.0/24 → locators (TTL 60
// min), through a miss and a Map-Reply.
func resolve(t *testing.T, x *XTR, misses *[]engine.Miss, now time.Time, locs ...lisp.Locator) {
	t.Helper()
	*misses = []engine.Miss{{Addr: netip.MustParseAddr("10.9.1.10")}}
	out := x.Tick(now)
	if len(out) != 1 {
		t.Fatalf("%d requests", len(out))
	}
	x.Handle(replyFor(t, requestNonce(t, out[0]), lisp.MappingRecord{TTL: 60, EIDMaskLen: 24,
		EID: lisp.IPAddr(netip.MustParseAddr("10.9.1.0")), Locators: locs}), out[0].To, now)
	if _, ok := x.Lookup(0, netip.MustParseAddr("10.9.1.10"), now); !ok {
		t.Fatal("not resolved")
	}
}

func twoLocators() []lisp.Locator {
	return []lisp.Locator{
		{Priority: 1, Weight: 100, Reachable: true, Address: lisp.IPAddr(locA)},
		{Priority: 2, Weight: 100, Reachable: true, Address: lisp.IPAddr(locB)},
	}
}

// probesIn returns the RLOC-probes among out, by destination.
func probesIn(t *testing.T, out []lisp.Datagram) map[netip.Addr]*lisp.MapRequest {
	t.Helper()
	ps := map[netip.Addr]*lisp.MapRequest{}
	for _, o := range out {
		m, err := lisp.Parse(o.Data)
		if err != nil {
			t.Fatal(err)
		}
		if r, ok := m.(*lisp.MapRequest); ok && r.Probe {
			if o.To.Port() != 4342 {
				t.Fatalf("probe to %v", o.To)
			}
			ps[o.To.Addr()] = r
		}
	}
	return ps
}

func probeReplyFor(t *testing.T, req *lisp.MapRequest, probed netip.Addr) []byte {
	t.Helper()
	b, err := lisp.Marshal(&lisp.MapReply{Probe: true, Nonce: req.Nonce, Records: []lisp.MappingRecord{{TTL: 60, EIDMaskLen: 24,
		EID: lisp.IPAddr(netip.MustParseAddr("10.9.1.0")), Locators: []lisp.Locator{{Priority: 1, Weight: 100, Reachable: true, Probed: true, Address: lisp.IPAddr(probed)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func upState(t *testing.T, x *XTR, now time.Time) map[netip.Addr]bool {
	t.Helper()
	e, ok := x.Lookup(0, netip.MustParseAddr("10.9.1.10"), now)
	if !ok {
		t.Fatal("entry gone")
	}
	st := map[netip.Addr]bool{}
	for _, l := range e.Locators {
		st[l.Addr] = l.Up
	}
	return st
}

// TestRLOCProbeFailover: every ProbeInterval each locator of a cached
// mapping gets a Map-Request with the P bit for the mapping's prefix, to
// its control port. The locator that answers stays up; the one that does
// not is probed again ProbeRetries times (same nonce) and then marked
// down, and the map-cache published to the engine no longer uses it (the
// engine takes the up locators of the best priority: the priority-2
// locator carries the traffic). It keeps being probed and is up again
// once it answers. A probe reply with a nonce we did not send — forged,
// or late after the give-up — is ignored and counted.
func TestRLOCProbeFailover(t *testing.T) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := itrFor(t, &misses, &pub, func(c *Config) { c.ProbeInterval, c.ProbeTimeout, c.ProbeRetries = 10*time.Second, time.Second, 2 })
	resolve(t, x, &misses, t0, twoLocators()...)
	if st := upState(t, x, t0); !st[locA] || !st[locB] {
		t.Fatalf("locators %v, want both up (R bit)", st)
	}
	if ps := probesIn(t, x.Tick(t0.Add(9*time.Second))); len(ps) != 0 {
		t.Fatal("probed before the interval")
	}
	now := t0.Add(10 * time.Second)
	ps := probesIn(t, x.Tick(now))
	if len(ps) != 2 || ps[locA] == nil || ps[locB] == nil {
		t.Fatalf("probes %v, want one to each locator", ps)
	}
	for _, p := range ps {
		if len(p.Records) != 1 || p.Records[0].MaskLen != 24 || p.Records[0].EID.IP != netip.MustParseAddr("10.9.1.0") ||
			len(p.ITRRLOCs) != 1 || p.ITRRLOCs[0].IP != netip.MustParseAddr("192.0.2.1") || p.SMR || p.Nonce == 0 {
			t.Fatalf("probe %+v", p)
		}
	}
	firstA := ps[locA]
	// Only B answers.
	x.Handle(probeReplyFor(t, ps[locB], locB), netip.AddrPortFrom(locB, 4342), now)
	for i := 1; i <= 2; i++ {
		retry := probesIn(t, x.Tick(now.Add(time.Duration(i)*time.Second)))
		if len(retry) != 1 || retry[locA] == nil || retry[locA].Nonce != firstA.Nonce {
			t.Fatalf("retry %d: %v, want locator A again with its nonce", i, retry)
		}
	}
	pub = nil
	now = now.Add(3 * time.Second)
	x.Tick(now)
	if st := upState(t, x, now); st[locA] || !st[locB] {
		t.Fatalf("locators %v, want A down, B up", st)
	}
	s := x.Stats()
	if pub == nil || s.LocatorsDown != 1 || s.Probes != 2 || s.ProbeRetries != 2 || s.ProbeReplies != 1 || s.LocatorsDownNow != 1 || s.LocatorsUpNow != 1 {
		t.Fatalf("published %v, stats %+v", pub != nil, s)
	}
	// Late answer to the given-up probe, and a forged one: ignored.
	x.Handle(probeReplyFor(t, firstA, locA), netip.AddrPortFrom(locA, 4342), now)
	x.Handle(probeReplyFor(t, &lisp.MapRequest{Nonce: 0xbad}, locA), netip.AddrPortFrom(locA, 4342), now)
	if st := upState(t, x, now); st[locA] || x.Stats().ProbeBadNonce != 2 || x.Stats().BadNonce != 0 {
		t.Fatalf("locators %v, stats %+v: an unknown probe nonce was taken", st, x.Stats())
	}

	// A refreshed mapping does not bring the dead locator back.
	x.learn([]lisp.MappingRecord{{TTL: 60, EIDMaskLen: 24, EID: lisp.IPAddr(netip.MustParseAddr("10.9.1.0")), Locators: twoLocators()}}, now)
	if st := upState(t, x, now); st[locA] {
		t.Fatal("a Map-Reply's R bit overrode the probes")
	}

	// The down locator is probed again at the interval; it answers: up.
	now = now.Add(10 * time.Second)
	ps = probesIn(t, x.Tick(now))
	if ps[locA] == nil || ps[locB] == nil {
		t.Fatalf("probes %v", ps)
	}
	pub = nil
	x.Handle(probeReplyFor(t, ps[locA], locA), netip.AddrPortFrom(locA, 4342), now)
	if st := upState(t, x, now); !st[locA] || x.Stats().LocatorsUp != 1 || pub == nil {
		t.Fatalf("locators %v, stats %+v, published %v", st, x.Stats(), pub != nil)
	}
}

// TestRLOCProbeAllDown: a mapping whose only locator stops answering is
// down in the map-cache, but the data plane keeps using it (the R bit):
// there is nothing better, and a peer that answers no probes at all keeps
// working. With two locators, one answering, the dead one is not used.
func TestRLOCProbeAllDown(t *testing.T) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := itrFor(t, &misses, &pub, func(c *Config) { c.ProbeInterval, c.ProbeTimeout, c.ProbeRetries = 10*time.Second, time.Second, 1 })
	resolve(t, x, &misses, t0, twoLocators()[:1]...)
	for i := 10; i <= 12; i++ {
		x.Tick(t0.Add(time.Duration(i) * time.Second))
	}
	now := t0.Add(12 * time.Second)
	if st := upState(t, x, now); st[locA] || x.Stats().LocatorsDown != 1 {
		t.Fatalf("locators %v, %+v: want A down", st, x.Stats())
	}
	x.mu.Lock()
	e := x.cache[cacheKey{0, pfx("10.9.1.0/24")}]
	used := x.usable(e)
	x.mu.Unlock()
	if len(used) != 1 || !used[0].Up || e.Locators[0].Up {
		t.Fatalf("published %+v (entry %+v), want the only locator used", used, e.Locators)
	}

	x = itrFor(t, &misses, &pub, func(c *Config) { c.ProbeInterval, c.ProbeTimeout, c.ProbeRetries = 10*time.Second, time.Second, 1 })
	resolve(t, x, &misses, t0, twoLocators()...)
	ps := probesIn(t, x.Tick(t0.Add(10*time.Second)))
	x.Handle(probeReplyFor(t, ps[locB], locB), netip.AddrPortFrom(locB, 4342), t0.Add(10*time.Second))
	x.Tick(t0.Add(11 * time.Second))
	x.Tick(t0.Add(12 * time.Second))
	x.mu.Lock()
	used = x.usable(x.cache[cacheKey{0, pfx("10.9.1.0/24")}])
	x.mu.Unlock()
	if len(used) != 2 || used[0].Up || !used[1].Up {
		t.Fatalf("published %+v, want A down, B up", used)
	}
}

// TestRLOCProbeOff: without ProbeInterval no probe is sent and the R bit
// alone says whether a locator is up.
func TestRLOCProbeOff(t *testing.T) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := itrFor(t, &misses, &pub, nil)
	locs := twoLocators()
	locs[0].Reachable = false
	resolve(t, x, &misses, t0, locs...)
	for i := range 100 {
		if ps := probesIn(t, x.Tick(t0.Add(time.Duration(i)*time.Second))); len(ps) != 0 {
			t.Fatal("probed with probing off")
		}
	}
	if st := upState(t, x, t0); st[locA] || !st[locB] {
		t.Fatalf("locators %v", st)
	}
}

// TestProbeBitOnLookupReply: a Map-Reply with the P bit whose nonce is an
// outstanding look-up's (not a probe's) answers that look-up.
func TestProbeBitOnLookupReply(t *testing.T) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := itrFor(t, &misses, &pub, func(c *Config) { c.ProbeInterval = 10 * time.Second })
	misses = []engine.Miss{{Addr: netip.MustParseAddr("10.9.1.10")}}
	out := x.Tick(t0)
	b, err := lisp.Marshal(&lisp.MapReply{Probe: true, Nonce: requestNonce(t, out[0]), Records: []lisp.MappingRecord{{TTL: 60, EIDMaskLen: 24,
		EID: lisp.IPAddr(netip.MustParseAddr("10.9.1.0")), Locators: twoLocators()}}})
	if err != nil {
		t.Fatal(err)
	}
	x.Handle(b, out[0].To, t0)
	if _, ok := x.Lookup(0, netip.MustParseAddr("10.9.1.10"), t0); !ok || x.Stats().ProbeBadNonce != 0 || x.Stats().Replies != 1 {
		t.Fatalf("%+v", x.Stats())
	}
}

// TestRLOCProbeManyEntries: with 200 cached mappings of two locators each,
// every locator is probed once per interval and only then (the probes are
// kept soonest-first, so Tick does not look at the others); entries that
// expire take their probes with them.
func TestRLOCProbeManyEntries(t *testing.T) {
	var misses []engine.Miss
	var pub *engine.MapCache
	x := itrFor(t, &misses, &pub, func(c *Config) {
		c.ProbeInterval, c.ProbeTimeout, c.RequestsPerSecond = 30*time.Second, time.Second, 1000
	})
	var recs []lisp.MappingRecord
	for i := range 200 {
		eid := netip.AddrFrom4([4]byte{10, 20, byte(i), 0})
		ttl := uint32(60)
		if i%2 == 1 {
			ttl = 1 // half expire after a minute
		}
		recs = append(recs, lisp.MappingRecord{TTL: ttl, EIDMaskLen: 24, EID: lisp.IPAddr(eid), Locators: twoLocators()})
	}
	x.mu.Lock()
	x.learn(recs, t0)
	x.mu.Unlock()
	count := func(from, to time.Duration) int {
		n := 0
		for d := from; d < to; d += 100 * time.Millisecond {
			out := x.Tick(t0.Add(d))
			for _, o := range out {
				m, _ := lisp.Parse(o.Data)
				if r, ok := m.(*lisp.MapRequest); ok && r.Probe {
					n++
					b := probeReplyFor(t, r, o.To.Addr())
					x.Handle(b, o.To, t0.Add(d))
				}
			}
		}
		return n
	}
	if n := count(0, 30*time.Second); n != 0 {
		t.Fatalf("%d probes before the interval", n)
	}
	if n := count(30*time.Second, 31*time.Second); n != 400 {
		t.Fatalf("%d probes at the interval, want 400", n)
	}
	if n := count(31*time.Second, 60*time.Second); n != 0 {
		t.Fatalf("%d probes between rounds", n)
	}
	// The TTL-1 entries expire at 60 s: their probes go with them.
	if n := count(60*time.Second, 61*time.Second); n != 200 || len(x.probes) != 200 || len(x.probeQ) != 200 {
		t.Fatalf("%d probes at 60 s, %d / %d tracked, want 200", n, len(x.probes), len(x.probeQ))
	}
	if s := x.Stats(); s.ProbeReplies != 600 || s.LocatorsDown != 0 {
		t.Fatalf("%+v", s)
	}
}
