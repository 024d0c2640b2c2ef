package engine

import "encoding/binary"

// lookupMemo remembers a Processor's last AS-Prefix look-up of one side
// (source or destination): packets of a flow come in bursts (a TCP window,
// a segmentation offload's train, a NIC queue that hashes flows to one
// poll loop), so the next packet's address is often the last one's, and a
// compare of two words then replaces a trie walk, the largest share of an
// IPv6 tag add after SipHash. One entry, not a table of them: a miss costs
// the compare alone (a table's hash and store cost ~8 ns a miss when
// measured with random flows, BenchmarkPipelineManyFlows), so traffic
// without locality pays next to nothing for it.
//
// A memo is valid for one snapshot only: Process forgets both memos when
// it is handed other Tables than the last batch's (every publication), so
// a change of the AS-Prefix table is never answered from one. Owned by one
// poll loop: no lock, no allocation, no pointer (its store needs no write
// barrier).
type lookupMemo struct {
	hi, lo uint64 // the address, as two words
	member int32
	bits   byte
	valid  bool
}

// lookup returns what t.lookup returns for addr, from the memo when it
// holds addr.
func (m *lookupMemo) lookup(t *Tables, addr *[16]byte) (member int, bits byte) {
	hi := binary.LittleEndian.Uint64(addr[:8])
	lo := binary.LittleEndian.Uint64(addr[8:])
	if m.hi == hi && m.lo == lo && m.valid {
		return int(m.member), m.bits
	}
	member, bits = t.lookup(addr)
	// Field by field: a composite literal is built on the stack and
	// copied with wide loads of what was just stored narrow (a stall).
	m.hi, m.lo, m.member, m.bits, m.valid = hi, lo, int32(member), bits, true
	return member, bits
}
