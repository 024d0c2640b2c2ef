package afxdp

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/engine"
)

// The XDP pre-filter (issue 18). On a port of role EGRESS, psavd's XDP
// program drops, before the AF_XDP redirect, what the engine would certainly
// drop for the same reason (docs/wire.md §2.2):
//
//   - spoofed-local: the source's longest AS-Prefix match is this AS;
//   - no-tag: the source is a member whose validation key the engine holds,
//     the way out is INGRESS, and the packet carries no PSAV option;
//   - stale-epoch: the same, with a well-formed PSAV option whose epoch
//     octet is outside e−2 … e+2 (see below).
//
// Everything else goes to the socket, where the engine stays the reference:
// the pre-filter drops a frame only where the engine's parser would find
// it well formed (IPv4 without options or with exactly psavd's option and
// two NOPs, a correct header checksum and length; IPv6 without extension
// headers or with exactly one Destination Options header holding only the
// PSAV option, followed by an upper-layer header) and not link-scoped.
// Frames to the node's own addresses (LISP data among them) are never
// pre-filtered. TestPrefilterMatchesEngine and FuzzPrefilterMatchesEngine
// check that every drop of the pre-filter is a drop of the engine, with the
// same reason, on the same snapshot.
//
// Prefix sets: one LPM trie holds two generations of the AS-Prefix table,
// keyed by (generation, address): every prefix of the engine's table with
// its class (local, keyed member, other member, none), so that the trie's
// longest match is bart's. The generation in use, the epoch octet and the
// flags are one u32 of the config map, which the program loads once per
// packet.
//
// No window (why a swap misjudges nothing): Sync fills the generation not
// in use from one engine snapshot S and one epoch e, and only then flips the
// word with a single 4-byte map update. A packet loads the word once, so it
// is judged entirely by one generation, i.e. by one (S, e) pair; the
// pre-filter drops it only if the engine would drop it under S at e−1, e
// or e+1 (a member is "keyed" in a generation only if its validation peer
// holds K(e), which makes Tables.Keyed true for every epoch in e−1 … e+1;
// an epoch octet is stale only outside e−2 … e+2, a superset of what the
// engine accepts at e−1 … e+1). So the syncer may flip before or after the
// engine's own atomic swap, and the clock may cross an epoch boundary
// between the two: each pre-filter drop is a drop the engine with the
// matching snapshot agrees with, and everything passed is judged by the
// engine with whatever snapshot it holds. Should the syncer stop, the
// epoch-dependent drops (no-tag, stale-epoch) stop by themselves once the
// engine's clock could have passed e+1: Sync also writes that moment as a
// CLOCK_MONOTONIC deadline, which the program compares with
// bpf_ktime_get_ns. A generation is rewritten only
// a grace period after it was last in use (pfGrace), so that a program
// still running on it never sees it change.

// Classes of the prefix trie.
const (
	pfNone   = 0 // a prefix the engine does not resolve to a member (shadows shorter ones)
	pfLocal  = 1 // this AS
	pfKeyed  = 2 // a member whose validation peer holds K(e) in this generation
	pfMember = 3 // another member (no key, no peer): the engine decides
)

// Shapes of a pre-filtered frame.
const (
	pfUntagged    = 0 // no PSAV option, well formed
	pfTagged      = 1 // psavd's PSAV option, TagLen/AI 0x71
	pfTaggedOther = 2 // psavd's PSAV option with another TagLen/AI (bad-tag: the engine's)
)

// Pre-filter counters (per-CPU array index).
const (
	pfCntSpoofedLocal = 0
	pfCntNoTag        = 1
	pfCntStaleEpoch   = 2
	pfCntSample       = 3 // sample tick, not a drop
	pfNumCounters     = 4
)

// pfReasons maps a counter index to the engine's reason.
var pfReasons = [...]engine.Reason{engine.DropSpoofedLocal, engine.DropNoTag, engine.DropStaleEpoch}

const (
	pfKeySize           = 4 + 4 + 16 // prefixlen, generation word, address
	maxPrefilterEntries = 1 << 21    // two generations of up to 1M prefixes (no prealloc)
	pfSampleEvery       = 1024       // one in pfSampleEvery drops goes to the socket when sampling
	pfGrace             = 20 * time.Millisecond
)

// pfKey is the LPM key: PrefixLen counts bits from the generation word on.
type pfKey struct {
	PrefixLen uint32
	Gen       uint32
	Addr      [16]byte
}

// PrefilterOptions configure the pre-filter of one interface.
type PrefilterOptions struct {
	// Enabled turns it on: only for a port of role EGRESS.
	Enabled bool
	// Validate also drops no-tag and stale-epoch: only where every packet
	// of the port leaves by an INGRESS port (cross-connect to INGRESS).
	Validate bool
	// Sample hands one in 1024 drops to the socket instead, so that the
	// engine drops, counts and captures it (the drop capture).
	Sample bool
}

func (o PrefilterOptions) flags() uint32 {
	var f uint32
	if o.Enabled {
		f |= cfgPrefilter
		if o.Validate {
			f |= cfgPFValidate
		}
		if o.Sample {
			f |= cfgPFSample
		}
	}
	return f
}

// Prefilter keeps the pre-filter's maps in step with the engine's tables.
type Prefilter struct {
	cfg, pfx, cnt, dl *ebpf.Map

	mu      sync.Mutex
	base    uint32 // flags of Options (cross-connect, fail-closed)
	opts    PrefilterOptions
	gen     uint32
	epoch   int64
	synced  bool
	sets    [2]map[pfKey]uint8 // what each generation holds
	last    *engine.Tables
	flipped time.Time
}

func newPrefilter(coll *ebpf.Collection, base uint32) *Prefilter {
	return &Prefilter{cfg: coll.Maps[mapConfig], pfx: coll.Maps[mapPrefixes], cnt: coll.Maps[mapPFCounts], dl: coll.Maps[mapPFDead], base: base & (cfgCrossConnect | cfgFailClosed),
		sets: [2]map[pfKey]uint8{{}, {}}, epoch: -1}
}

// word is the config word for the current state; called with mu held.
func (p *Prefilter) word() uint32 {
	w := p.base | p.opts.flags() | p.gen<<cfgGenShift
	if p.synced && p.epoch >= 0 {
		w |= cfgEpochValid | uint32(byte(p.epoch))<<cfgEpochShift
	}
	return w
}

// Configure sets the options (and writes the word).
func (p *Prefilter) Configure(o PrefilterOptions) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.opts = o
	return p.cfg.Put(uint32(0), p.word())
}

// Options returns the options in force.
func (p *Prefilter) Options() PrefilterOptions {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.opts
}

// prefilterSet is what a generation built from t at epoch e holds.
func prefilterSet(t *engine.Tables, e int64, gen uint32) map[pfKey]uint8 {
	set := map[pfKey]uint8{}
	if t == nil || t.Prefixes == nil {
		return set
	}
	for pfx, v := range t.Prefixes.All() {
		class := uint8(pfNone)
		if m := int(v >> 8); m < len(t.Members) {
			mb := &t.Members[m]
			switch {
			case mb.Local:
				class = pfLocal
			case mb.ValidatePeer >= 0 && int(mb.ValidatePeer) < len(t.Peers):
				class = pfMember
				if _, _, ok := t.Peers[mb.ValidatePeer].Key(e); ok {
					class = pfKeyed
				}
			default:
				class = pfMember
			}
		}
		a, bits := pfx.Addr(), pfx.Bits()
		if a.Is4() {
			bits += 96
		}
		set[pfKey{PrefixLen: 32 + uint32(bits), Gen: gen, Addr: a.As16()}] = class
	}
	return set
}

// Sync makes the pre-filter judge by t at unix time now: when the
// classes (or the epoch) changed, the generation not in use is brought to
// the new set and the word flipped in one update (see the comment at the
// top for why no packet is misjudged). Cheap when nothing changed.
func (p *Prefilter) Sync(t *engine.Tables, now int64) error {
	e := int64(-1)
	if t != nil {
		e = engine.Epoch(now, t.T0, t.Period)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.synced && t == p.last && e == p.epoch {
		return nil
	}
	ng := 1 - p.gen
	set := prefilterSet(t, e, ng)
	cur := p.sets[p.gen]
	same := len(cur) == len(set)
	if same {
		for k, v := range set {
			k.Gen = p.gen
			if c, ok := cur[k]; !ok || c != v {
				same = false
				break
			}
		}
	}
	if same && p.synced {
		// Same classes: only the epoch octet moves, in one word update.
		p.last, p.epoch = t, e
		if err := p.cfg.Put(uint32(0), p.word()); err != nil {
			return err
		}
		return p.putDeadline(t, e, now)
	}
	// A program that loaded the word before the last flip may still read
	// generation ng: leave it alone for a grace period (programs run for
	// microseconds, under RCU).
	if d := time.Since(p.flipped); d < pfGrace {
		time.Sleep(pfGrace - d)
	}
	old := p.sets[ng]
	for k := range old {
		if _, ok := set[k]; !ok {
			if err := p.pfx.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("afxdp: pre-filter: delete %v: %w", k, err)
			}
		}
	}
	for k, v := range set {
		if c, ok := old[k]; ok && c == v {
			continue
		}
		if err := p.pfx.Put(k, v); err != nil {
			return fmt.Errorf("afxdp: pre-filter: %w", err)
		}
	}
	p.sets[ng] = set
	p.gen, p.last, p.epoch, p.synced = ng, t, e, true
	if err := p.cfg.Put(uint32(0), p.word()); err != nil {
		return fmt.Errorf("afxdp: pre-filter: flip: %w", err)
	}
	p.flipped = time.Now()
	return p.putDeadline(t, e, now)
}

// putDeadline writes when the word's epoch e stops being safe: once the
// engine's clock could reach e+2 (the start of epoch e+2, less a second for
// the whole seconds now is given in), in CLOCK_MONOTONIC nanoseconds, the
// clock of bpf_ktime_get_ns. Written after the word, so that a packet that
// sees a new word with the old deadline is only judged more cautiously.
// Without an epoch (e < 0) the deadline is 0: no epoch checks.
func (p *Prefilter) putDeadline(t *engine.Tables, e, now int64) error {
	var dl uint64
	if t != nil && e >= 0 && t.Period > 0 {
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			return fmt.Errorf("afxdp: pre-filter: clock: %w", err)
		}
		left := t.T0 + (e+2)*t.Period - now - 1
		if left > 0 {
			dl = uint64(ts.Nano()) + uint64(left)*uint64(time.Second)
		}
	}
	if err := p.dl.Put(uint32(0), dl); err != nil {
		return fmt.Errorf("afxdp: pre-filter: deadline: %w", err)
	}
	return nil
}

// Generation returns the generation in use (tests).
func (p *Prefilter) Generation() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// Drops returns the pre-filter's drops by engine reason, summed over CPUs.
func (p *Prefilter) Drops() (map[engine.Reason]uint64, error) {
	out := make(map[engine.Reason]uint64, len(pfReasons))
	for i, r := range pfReasons {
		var per []uint64
		if err := p.cnt.Lookup(uint32(i), &per); err != nil {
			return nil, fmt.Errorf("afxdp: pre-filter counters: %w", err)
		}
		var s uint64
		for _, v := range per {
			s += v
		}
		out[r] = s
	}
	return out, nil
}

// PrefilterReasons are the reasons the pre-filter drops for.
func PrefilterReasons() []engine.Reason { return pfReasons[:] }

var (
	clockOnce sync.Once
	clockFn   asm.BuiltinFunc
)

// monotonicNow is the helper the program reads CLOCK_MONOTONIC with:
// bpf_ktime_get_coarse_ns (Linux 5.11; a read of the timekeeper's last
// tick, ~25 ns cheaper per packet here than bpf_ktime_get_ns, which reads
// the clock source) where the kernel has it. Coarse lags by at most a tick,
// far inside the second of margin the deadline keeps.
func monotonicNow() asm.BuiltinFunc {
	clockOnce.Do(func() {
		clockFn = asm.FnKtimeGetNs
		if features.HaveProgramHelper(ebpf.XDP, asm.FnKtimeGetCoarseNs) == nil {
			clockFn = asm.FnKtimeGetCoarseNs
		}
	})
	return clockFn
}

// prefilterInstructions is the pre-filter's part of the XDP program. Entry
// points: "pf4" (IPv4 transit, bytes up to endIP4 checked) and "ip6transit"
// (IPv6 transit, up to endIP6). It ends in "ip4fwd"/"ip6fwd" (the program's
// own transit decision), "data" (to the socket) or returns XDP_DROP.
// Register use as in xdpInstructions; R0-R5 scratch.
func prefilterInstructions() asm.Instructions {
	var p asm.Instructions
	add := func(ins ...asm.Instruction) { p = append(p, ins...) }
	addAll := func(insns asm.Instructions) { p = append(p, insns...) }
	ldb := func(dst asm.Register, off int16) asm.Instruction { return asm.LoadMem(dst, asm.R7, off, asm.Byte) }

	// ---- IPv4.
	add(
		asm.Mov.Reg(asm.R3, asm.R9).WithSymbol("pf4"),
		asm.And.Imm(asm.R3, cfgPrefilter),
		asm.JEq.Imm(asm.R3, 0, "ip4fwd"),
		asm.Mov.Imm(asm.R3, pfUntagged), asm.StoreMem(asm.RFP, stShape, asm.R3, asm.DWord),
		asm.Mov.Imm(asm.R3, 0), asm.StoreMem(asm.RFP, stEpoch, asm.R3, asm.DWord),
		ldb(asm.R3, offIP4VerIHL),
		asm.JEq.Imm(asm.R3, 0x45, "pf4len"),
		asm.JNE.Imm(asm.R3, 0x49, "ip4fwd"),
	)
	// IHL 9: exactly psavd's option (type 0x9E, length 14) and two NOPs.
	addAll(boundsCheck("", endIP4+16, "ip4fwd"))
	add(
		ldb(asm.R3, endIP4), asm.JNE.Imm(asm.R3, 0x9E, "ip4fwd"),
		ldb(asm.R3, endIP4+1), asm.JNE.Imm(asm.R3, 14, "ip4fwd"),
		ldb(asm.R3, endIP4+14), asm.JNE.Imm(asm.R3, 1, "ip4fwd"),
		ldb(asm.R3, endIP4+15), asm.JNE.Imm(asm.R3, 1, "ip4fwd"),
		ldb(asm.R3, endIP4+12), asm.StoreMem(asm.RFP, stEpoch, asm.R3, asm.DWord),
		asm.Mov.Imm(asm.R3, pfTagged), asm.StoreMem(asm.RFP, stShape, asm.R3, asm.DWord),
		ldb(asm.R3, endIP4+2), asm.JEq.Imm(asm.R3, 0x71, "pf4len"),
		asm.Mov.Imm(asm.R3, pfTaggedOther), asm.StoreMem(asm.RFP, stShape, asm.R3, asm.DWord),
	)
	// Total length: IHL*4 <= total <= what the frame holds.
	add(
		asm.LoadMem(asm.R3, asm.R7, lenEth+2, asm.Half).WithSymbol("pf4len"),
		asm.HostTo(asm.BE, asm.R3, asm.Half),
		asm.And.Imm(asm.R3, 0xffff),
		ldb(asm.R2, offIP4VerIHL),
		asm.And.Imm(asm.R2, 0x0f),
		asm.LSh.Imm(asm.R2, 2),
		asm.JLT.Reg(asm.R3, asm.R2, "ip4fwd"),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, lenEth),
		asm.Add.Reg(asm.R2, asm.R3),
		asm.JGT.Reg(asm.R2, asm.R8, "ip4fwd"),
		// Link scope (the engine carries these across unjudged):
		// destination >= 224.0.0.0, source 169.254/16 or 0.0.0.0.
		ldb(asm.R3, offIP4Dst), asm.JGE.Imm(asm.R3, 224, "ip4fwd"),
		asm.LoadMem(asm.R3, asm.R7, lenEth+12, asm.Word),
		asm.JEq.Imm(asm.R3, 0, "ip4fwd"),
		ldb(asm.R3, lenEth+12), asm.JNE.Imm(asm.R3, 169, "pf4ck"),
		ldb(asm.R3, lenEth+13), asm.JEq.Imm(asm.R3, 254, "ip4fwd"),
	)
	// Header checksum (the engine drops a wrong one as malformed): the
	// one's-complement sum of the header's 16-bit words folds to 0xffff
	// (byte order does not matter for that test).
	add(asm.Mov.Imm(asm.R4, 0).WithSymbol("pf4ck"))
	for off := int16(lenEth); off < endIP4; off += 2 {
		add(asm.LoadMem(asm.R3, asm.R7, off, asm.Half), asm.Add.Reg(asm.R4, asm.R3))
	}
	add(ldb(asm.R3, offIP4VerIHL), asm.JEq.Imm(asm.R3, 0x45, "pf4fold"))
	addAll(boundsCheck("", endIP4+16, "ip4fwd"))
	for off := int16(endIP4); off < endIP4+16; off += 2 {
		add(asm.LoadMem(asm.R3, asm.R7, off, asm.Half), asm.Add.Reg(asm.R4, asm.R3))
	}
	add(asm.Mov.Reg(asm.R3, asm.R4).WithSymbol("pf4fold"))
	for range 2 {
		add(asm.RSh.Imm(asm.R3, 16), asm.And.Imm(asm.R4, 0xffff), asm.Add.Reg(asm.R4, asm.R3), asm.Mov.Reg(asm.R3, asm.R4))
	}
	add(
		asm.JNE.Imm(asm.R4, 0xffff, "ip4fwd"),
		// key: ::ffff:src
		asm.StoreImm(asm.RFP, stKey, 0, asm.Word),
		asm.StoreImm(asm.RFP, stKey+4, 0, asm.Word),
		asm.Mov.Imm(asm.R3, 0),
		asm.StoreMem(asm.RFP, stKey+8, asm.R3, asm.Word),
		asm.StoreImm(asm.RFP, stKey+10, 0xffff, asm.Half),
		asm.LoadMem(asm.R3, asm.R7, lenEth+12, asm.Word),
		asm.StoreMem(asm.RFP, stKey+12, asm.R3, asm.Word),
		asm.Ja.Label("pflookup"),
	)

	// ---- IPv6.
	add(
		asm.Mov.Reg(asm.R3, asm.R9).WithSymbol("ip6transit"),
		asm.And.Imm(asm.R3, cfgPrefilter),
		asm.JEq.Imm(asm.R3, 0, "ip6fwd"),
		asm.Mov.Imm(asm.R3, pfUntagged), asm.StoreMem(asm.RFP, stShape, asm.R3, asm.DWord),
		asm.Mov.Imm(asm.R3, 0), asm.StoreMem(asm.RFP, stEpoch, asm.R3, asm.DWord),
		ldb(asm.R3, lenEth), asm.RSh.Imm(asm.R3, 4), asm.JNE.Imm(asm.R3, 6, "ip6fwd"),
		// r5 = payload length; 40 + it must fit the frame.
		asm.LoadMem(asm.R5, asm.R7, lenEth+4, asm.Half),
		asm.HostTo(asm.BE, asm.R5, asm.Half),
		asm.And.Imm(asm.R5, 0xffff),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, endIP6),
		asm.Add.Reg(asm.R2, asm.R5),
		asm.JGT.Reg(asm.R2, asm.R8, "ip6fwd"),
		// Link scope: multicast destination, fe80::/10 source or
		// destination, unspecified source.
		ldb(asm.R3, offIP6Dst), asm.JEq.Imm(asm.R3, 0xff, "ip6fwd"),
		asm.JNE.Imm(asm.R3, 0xfe, "pf6src"),
		ldb(asm.R3, offIP6Dst+1), asm.And.Imm(asm.R3, 0xc0), asm.JEq.Imm(asm.R3, 0x80, "ip6fwd"),
		ldb(asm.R3, lenEth+8).WithSymbol("pf6src"), asm.JNE.Imm(asm.R3, 0xfe, "pf6zero"),
		ldb(asm.R3, lenEth+9), asm.And.Imm(asm.R3, 0xc0), asm.JEq.Imm(asm.R3, 0x80, "ip6fwd"),
		asm.LoadMem(asm.R3, asm.R7, lenEth+8, asm.DWord).WithSymbol("pf6zero"),
		asm.LoadMem(asm.R4, asm.R7, lenEth+16, asm.DWord),
		asm.Or.Reg(asm.R3, asm.R4),
		asm.JEq.Imm(asm.R3, 0, "ip6fwd"),
		// What follows the header.
		ldb(asm.R3, offIP6Next),
		asm.JEq.Imm(asm.R3, 60, "pf6dopt"),
	)
	extHeaders := func(r asm.Register, to string) {
		for _, nh := range []int32{0, 43, 44, 51, 60, 135, 139, 140} {
			add(asm.JEq.Imm(r, nh, to))
		}
	}
	extHeaders(asm.R3, "ip6fwd")
	add(
		asm.JNE.Imm(asm.R3, protoICMP6, "pf6key"),
		asm.JEq.Imm(asm.R5, 0, "pf6key"), // no ICMPv6 type to see: not NDP to the engine
	)
	addAll(boundsCheck("", endIP6+1, "ip6fwd"))
	add(
		ldb(asm.R3, endIP6),
		asm.JLT.Imm(asm.R3, icmp6RS, "pf6key"),
		asm.JGT.Imm(asm.R3, icmp6Redir, "pf6key"),
		asm.Ja.Label("ip6fwd"), // NDP: link-scoped
	)
	// One Destination Options header of 16 octets holding only the PSAV
	// option, then an upper-layer header (not ICMPv6: NDP is the engine's).
	add(asm.JLT.Imm(asm.R5, 16, "ip6fwd").WithSymbol("pf6dopt"))
	addAll(boundsCheck("", endIP6+16, "ip6fwd"))
	add(
		ldb(asm.R3, endIP6+1), asm.JNE.Imm(asm.R3, 1, "ip6fwd"),
		ldb(asm.R3, endIP6+2), asm.JNE.Imm(asm.R3, 0x3B, "ip6fwd"),
		ldb(asm.R3, endIP6+3), asm.JNE.Imm(asm.R3, 12, "ip6fwd"),
		ldb(asm.R3, endIP6),
		asm.JEq.Imm(asm.R3, protoICMP6, "ip6fwd"),
	)
	extHeaders(asm.R3, "ip6fwd")
	add(
		ldb(asm.R3, endIP6+14), asm.StoreMem(asm.RFP, stEpoch, asm.R3, asm.DWord),
		asm.Mov.Imm(asm.R3, pfTagged), asm.StoreMem(asm.RFP, stShape, asm.R3, asm.DWord),
		ldb(asm.R3, endIP6+4), asm.JEq.Imm(asm.R3, 0x71, "pf6key"),
		asm.Mov.Imm(asm.R3, pfTaggedOther), asm.StoreMem(asm.RFP, stShape, asm.R3, asm.DWord),
	)
	add(
		asm.LoadMem(asm.R3, asm.R7, lenEth+8, asm.DWord).WithSymbol("pf6key"),
		asm.StoreMem(asm.RFP, stKey, asm.R3, asm.DWord),
		asm.LoadMem(asm.R3, asm.R7, lenEth+16, asm.DWord),
		asm.StoreMem(asm.RFP, stKey+8, asm.R3, asm.DWord),
	)

	// ---- Source look-up in the generation in use, then the verdict.
	add(
		asm.StoreImm(asm.RFP, stPfxLen, 32+128, asm.Word).WithSymbol("pflookup"),
		asm.Mov.Reg(asm.R3, asm.R9),
		asm.RSh.Imm(asm.R3, cfgGenShift),
		asm.And.Imm(asm.R3, 1),
		asm.StoreMem(asm.RFP, stGen, asm.R3, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapPrefixes),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stPfxLen),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "data"), // not a member's address
		asm.LoadMem(asm.R3, asm.R0, 0, asm.Byte),
		asm.StoreImm(asm.RFP, stCntKey, pfCntSpoofedLocal, asm.Word),
		asm.JEq.Imm(asm.R3, pfLocal, "pfdrop"),
		asm.JNE.Imm(asm.R3, pfKeyed, "data"),
		asm.JSet.Imm(asm.R9, cfgPFValidate, "pfvalidate"),
		asm.Ja.Label("data"),
		// The epoch-dependent checks hold only until the engine's clock
		// could pass e+1 (the deadline Sync writes, CLOCK_MONOTONIC): a
		// syncer that stopped never makes the pre-filter misjudge.
		monotonicNow().Call().WithSymbol("pfvalidate"),
		asm.StoreMem(asm.RFP, stNow, asm.R0, asm.DWord),
		asm.StoreImm(asm.RFP, stDlKey, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapPFDead),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stDlKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "data"),
		asm.LoadMem(asm.R3, asm.R0, 0, asm.DWord),
		asm.LoadMem(asm.R4, asm.RFP, stNow, asm.DWord),
		asm.JGT.Reg(asm.R4, asm.R3, "data"),
		asm.LoadMem(asm.R4, asm.RFP, stShape, asm.DWord),
		asm.StoreImm(asm.RFP, stCntKey, pfCntNoTag, asm.Word),
		asm.JEq.Imm(asm.R4, pfUntagged, "pfdrop"),
		asm.JNE.Imm(asm.R4, pfTagged, "data"),
		asm.JSet.Imm(asm.R9, cfgEpochValid, "pfepoch"),
		asm.Ja.Label("data"),
		// d = (octet − e) mod 256; accepted: e−2 … e+2.
		asm.LoadMem(asm.R4, asm.RFP, stEpoch, asm.DWord).WithSymbol("pfepoch"),
		asm.Mov.Reg(asm.R3, asm.R9),
		asm.RSh.Imm(asm.R3, cfgEpochShift),
		asm.And.Imm(asm.R3, 0xff),
		asm.Sub.Reg(asm.R4, asm.R3),
		asm.And.Imm(asm.R4, 0xff),
		asm.JLE.Imm(asm.R4, 2, "data"),
		asm.JGE.Imm(asm.R4, 254, "data"),
		asm.StoreImm(asm.RFP, stCntKey, pfCntStaleEpoch, asm.Word),
	)
	// ---- Drop: count it, or (sampling) hand one in pfSampleEvery to the
	// socket, where the engine drops, counts and captures it. The first
	// drop of each CPU is sampled, so that a lone forged packet is in the
	// capture too.
	add(
		asm.JSet.Imm(asm.R9, cfgPFSample, "pfsample").WithSymbol("pfdrop"),
		asm.Ja.Label("pfcount"),
		asm.StoreImm(asm.RFP, stSmpKey, pfCntSample, asm.Word).WithSymbol("pfsample"),
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapPFCounts),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stSmpKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pfcount"),
		asm.LoadMem(asm.R3, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R3, 1),
		asm.StoreMem(asm.R0, 0, asm.R3, asm.DWord),
		asm.And.Imm(asm.R3, pfSampleEvery-1),
		asm.JEq.Imm(asm.R3, 1, "data"), // the first drop on each CPU, then one in pfSampleEvery
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapPFCounts).WithSymbol("pfcount"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stCntKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pfret"),
		asm.LoadMem(asm.R3, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R3, 1),
		asm.StoreMem(asm.R0, 0, asm.R3, asm.DWord),
		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("pfret"),
		asm.Return(),
	)
	return p
}
