package engine

import "sync/atomic"

// Action is what the engine did with a packet it forwarded.
type Action uint8

// Actions, counted per port of arrival.
const (
	ActForwarded    Action = iota // forwarded, no tag work needed
	ActTagged                     // tag added
	ActValidated                  // tag validated and stripped
	ActReplaced                   // tag validated and replaced (community border)
	ActUnverifiable               // source not a member: forwarded unverified
	ActUntagged                   // should have been tagged but was not (no-room or no-key policy)
	ActPassthrough                // link-scoped or non-IP frame carried across a cross-connect
	ActTooBig                     // too big to encapsulate: answered with ICMP Packet Too Big
	numActions
)

var actionNames = [numActions]string{"forwarded", "tagged", "validated", "replaced", "unverifiable", "untagged", "passthrough", "icmp-too-big"}

func (a Action) String() string { return actionNames[a] }

// Reason is why a packet was dropped.
type Reason uint8

// Drop reasons, counted per port of arrival.
const (
	DropSpoofedLocal  Reason = iota // arrived from outside with a source of this AS
	DropSpoofedInside               // leaving with a source not of this AS (BCP 38)
	DropNoTag                       // from a member, but untagged
	DropBadTag                      // tag does not verify
	DropStaleEpoch                  // epoch octet outside e−1 … e+1
	DropNoKey                       // no key for the peer (no state machine)
	DropNoRoom                      // tag does not fit (policy drop)
	DropMalformed                   // not a well-formed IPv4/IPv6 packet
	DropNoRoute                     // routed: no route or no next hop
	DropNotIP                       // routed: not ours to forward (non-IP, link-scoped)
	DropTxFull                      // the out port did not accept the frame
	DropTTLExpired                  // routed: TTL or hop limit ran out
	DropLISPMiss                    // LISP: no map-cache entry (policy drop; the ITR was asked)
	DropLISPNegative                // LISP: negative map-cache entry with a drop action
	DropLISPNoRLOC                  // LISP: no usable locator, no route to it, or no source RLOC of its family
	DropLISPDecap                   // LISP: data for our RLOC that does not decapsulate (bad length, instance-ID, inner packet, fragment)
	DropLISPEncap                   // LISP: no headroom for the outer headers
	DropTooBig                      // LISP: too big to encapsulate, no ICMP error sent (policy, rate limit, DF clear)
	numReasons
)

var reasonNames = [numReasons]string{"spoofed-local", "spoofed-inside", "no-tag", "bad-tag", "stale-epoch", "no-key", "no-room", "malformed", "no-route", "not-ip", "tx-full", "ttl-expired",
	"lisp-miss", "lisp-negative", "lisp-no-rloc", "lisp-decap", "lisp-encap", "too-big"}

// LISPEvent counts what the LISP data plane did, besides the packet's action
// or drop (a tagged packet may also be encapsulated, a miss also queued).
type LISPEvent uint8

// LISP events.
const (
	LISPEncapsulated  LISPEvent = iota // encapsulated towards an RLOC
	LISPDecapsulated                   // decapsulated, then judged
	LISPMiss                           // map-cache miss
	LISPMissQueueFull                  // a miss the control plane was not told of (queue full)
	LISPNative                         // forwarded natively (negative entry or miss policy)
	numLISPEvents
)

var lispEventNames = [numLISPEvents]string{"encapsulated", "decapsulated", "miss", "miss-queue-full", "native"}

func (e LISPEvent) String() string { return lispEventNames[e] }

// LISPEvents lists every LISP event.
func LISPEvents() []LISPEvent {
	l := make([]LISPEvent, numLISPEvents)
	for i := range l {
		l[i] = LISPEvent(i)
	}
	return l
}

func (r Reason) String() string { return reasonNames[r] }

// Actions and Reasons list every value, for exporters.
func Actions() []Action {
	a := make([]Action, numActions)
	for i := range a {
		a[i] = Action(i)
	}
	return a
}

// Reasons lists every drop reason.
func Reasons() []Reason {
	r := make([]Reason, numReasons)
	for i := range r {
		r[i] = Reason(i)
	}
	return r
}

// Counters belong to one poll loop (one port of arrival). The loop tallies a
// batch in plain local counters and adds them here once per batch, so the
// packet path never touches a shared cache line; readers sum over loops.
type Counters struct {
	RxPackets atomic.Uint64
	RxBytes   atomic.Uint64
	Actions   [numActions]atomic.Uint64
	Drops     [numReasons]atomic.Uint64
	LISP      [numLISPEvents]atomic.Uint64
	// TxPackets is indexed by the engine port the frames left by.
	TxPackets []atomic.Uint64
}

// tally is a batch's worth of counts, kept by value in the loop.
type tally struct {
	rxBytes uint64
	actions [numActions]uint32
	drops   [numReasons]uint32
	lisp    [numLISPEvents]uint32
}

func (t *tally) flush(c *Counters, rx int) {
	c.RxPackets.Add(uint64(rx))
	c.RxBytes.Add(t.rxBytes)
	for i, n := range t.actions {
		if n != 0 {
			c.Actions[i].Add(uint64(n))
		}
	}
	for i, n := range t.drops {
		if n != 0 {
			c.Drops[i].Add(uint64(n))
		}
	}
	for i, n := range t.lisp {
		if n != 0 {
			c.LISP[i].Add(uint64(n))
		}
	}
	*t = tally{}
}
