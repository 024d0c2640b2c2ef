package mapserver

import (
	"encoding/binary"
	"net/netip"

	"github.com/psavd/psavd/control/lisp"
)

// The registration table holds up to millions of registrations for as
// long as the process runs, so it is laid out for the garbage collector
// to have nothing to trace in it: entries are pointer-free values in
// fixed-size chunks (memory the collector does not scan), linked to each
// other by index, each with its record in wire encoding; the map from key
// to entry has pointer-free keys and values. With a pointer-rich entry
// (netip values, *siteState, a decoded record aliasing the whole received
// datagram, queue pointers) every collection marked five or more objects
// per registration, and with 1 M registrations collections were a fifth of
// a loaded Map-Server's CPU and made its throughput uneven (docs/perf.md).

// ref is the index of an entry in the table; none is "no entry".
type ref int32

const none ref = -1

const (
	chunkBits = 12
	chunkLen  = 1 << chunkBits
	// recInline is the room for a record's encoding inside its entry: an
	// IPv6 EID with three IPv6 locators fits; longer records are kept in
	// table.long (rare, and a pointer each).
	recInline = 96
)

// regKey is a registration's EID prefix in its instance: pointer-free (a
// netip.Prefix holds a pointer) and three words without padding, so the
// map hashes and compares it as plain memory (a struct with padding gets
// a field-by-field hash and equality, measurably slower with 1 M keys).
type regKey struct {
	hi, lo uint64 // the address, 16 octets big-endian (IPv4: v4-mapped)
	meta   uint64 // iid<<32 | bits<<8 | 1 for IPv4
}

func newRegKey(iid uint32, p netip.Prefix) regKey {
	a := p.Addr().As16()
	m := uint64(iid)<<32 | uint64(p.Bits())<<8
	if p.Addr().Is4() {
		m |= 1
	}
	return regKey{hi: binary.BigEndian.Uint64(a[:8]), lo: binary.BigEndian.Uint64(a[8:]), meta: m}
}

func (k regKey) iid() uint32 { return uint32(k.meta >> 32) }
func (k regKey) bits() uint8 { return uint8(k.meta >> 8) }
func (k regKey) v4() bool    { return k.meta&1 != 0 }

func (k regKey) prefix() netip.Prefix {
	var a [16]byte
	binary.BigEndian.PutUint64(a[:8], k.hi)
	binary.BigEndian.PutUint64(a[8:], k.lo)
	return netip.PrefixFrom(unpackAddr(a, k.v4()), int(k.bits()))
}

func unpackAddr(a [16]byte, v4 bool) netip.Addr {
	if v4 {
		return netip.AddrFrom4([4]byte(a[12:]))
	}
	return netip.AddrFrom16(a)
}

// addrPort is a netip.AddrPort without its zone pointer (Handle unmaps
// and drops zones before anything is stored).
type addrPort struct {
	ip   [16]byte
	port uint16
	v4   bool
}

func packAddrPort(ap netip.AddrPort) addrPort {
	return addrPort{ip: ap.Addr().As16(), port: ap.Port(), v4: ap.Addr().Is4()}
}

func (a addrPort) unpack() netip.AddrPort {
	return netip.AddrPortFrom(unpackAddr(a.ip, a.v4), a.port)
}

// entry is one (EID prefix, ETR) registration.
type entry struct {
	k    regKey
	etr  etrID
	from addrPort // source of the last Map-Register
	site uint32   // siteState.id
	asn  uint32
	// registered and expires are nanoseconds since Server.base (the
	// monotonic clock when the Server's clock has it).
	registered, expires int64
	xtr                 lisp.XTRInfo // when hasXTR
	// prev and next link the expiry queue (or, for a free slot, next
	// links the free list); same is the next entry with the same key.
	prev, next, same ref
	live, queued     bool
	proxy, hasASN    bool
	hasXTR           bool
	// outside: the site's prefixes no longer allow k since a reload
	// (Server.outside counts these entries).
	outside bool
	recLen  uint16
	rec     [recInline]byte
}

// table is the entries' storage: chunks that never move (so a ref stays
// valid as the table grows, and growing copies nothing), a free list of
// released slots, and the records too long for their entry.
type table struct {
	chunks [][]entry
	slots  int // slots handed out so far (live or free)
	free   ref
	long   map[ref][]byte
	live   int
}

func newTable() table { return table{free: none, long: map[ref][]byte{}} }

func (t *table) at(r ref) *entry { return &t.chunks[r>>chunkBits][r&(chunkLen-1)] }

// alloc returns a cleared live slot.
func (t *table) alloc() ref {
	var r ref
	if t.free != none {
		r = t.free
		t.free = t.at(r).next
	} else {
		if t.slots == len(t.chunks)*chunkLen {
			t.chunks = append(t.chunks, make([]entry, chunkLen))
		}
		r = ref(t.slots)
		t.slots++
	}
	e := t.at(r)
	*e = entry{live: true, prev: none, next: none, same: none}
	t.live++
	return r
}

// release returns r's slot to the free list.
func (t *table) release(r ref) {
	e := t.at(r)
	if e.recLen > recInline {
		delete(t.long, r)
	}
	*e = entry{prev: none, next: t.free, same: none}
	t.free = r
	t.live--
}

// setRecord stores a record's encoding in r.
func (t *table) setRecord(r ref, b []byte) {
	e := t.at(r)
	if len(b) <= recInline {
		if e.recLen > recInline {
			delete(t.long, r)
		}
		copy(e.rec[:], b)
	} else {
		t.long[r] = append(t.long[r][:0], b...)
	}
	e.recLen = uint16(len(b))
}

// record returns r's record, decoded.
func (t *table) record(r ref) lisp.MappingRecord {
	e := t.at(r)
	b := e.rec[:min(int(e.recLen), recInline)]
	if e.recLen > recInline {
		b = t.long[r]
	}
	// It was encoded by AppendMappingRecord from a decoded record: it
	// decodes. (A failure would leave a partial record; none is possible.)
	m, _, _ := lisp.ParseMappingRecord(b)
	return m
}

// each calls f with every live entry.
func (t *table) each(f func(r ref, e *entry)) {
	for r := ref(0); int(r) < t.slots; r++ {
		if e := t.at(r); e.live {
			f(r, e)
		}
	}
}

// expiryQueue holds the registrations in the order they expire, oldest
// first, as a doubly linked list through the entries. Every registration
// lives RegistrationTTL from its last Map-Register, so a new deadline is
// the latest one: it goes at the tail, and a refresh moves its entry there
// (O(1) both). A deadline earlier than the tail's (a clock that went back;
// never with time.Now's monotonic reading) is walked into place from the
// tail, so the order, and what a sweep takes, stays right.
type expiryQueue struct {
	head, tail ref
	n          int
}

func (t *table) push(q *expiryQueue, r ref) {
	e := t.at(r)
	at := q.tail
	for at != none && e.expires < t.at(at).expires {
		at = t.at(at).prev
	}
	// Insert e after at (at the head when at is none).
	e.prev = at
	if at == none {
		e.next = q.head
		q.head = r
	} else {
		a := t.at(at)
		e.next = a.next
		a.next = r
	}
	if e.next == none {
		q.tail = r
	} else {
		t.at(e.next).prev = r
	}
	e.queued = true
	q.n++
}

func (t *table) unqueue(q *expiryQueue, r ref) {
	e := t.at(r)
	if !e.queued {
		return
	}
	if e.prev == none {
		q.head = e.next
	} else {
		t.at(e.prev).next = e.next
	}
	if e.next == none {
		q.tail = e.prev
	} else {
		t.at(e.next).prev = e.prev
	}
	e.prev, e.next, e.queued = none, none, false
	q.n--
}
