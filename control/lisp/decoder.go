package lisp

import "fmt"

// decodePool is the storage a RegisterDecoder lends its reader.
type decodePool struct {
	recs []MappingRecord
	locs []Locator
	auth []byte
	xtr  XTRInfo
}

// locators returns room for n locators: carved from the pool when there
// is one (the slices are capped, so an append by the caller copies rather
// than overwrites a neighbour), allocated otherwise.
func (r *reader) locators(n int) []Locator {
	p := r.pool
	if p == nil {
		return make([]Locator, n)
	}
	if cap(p.locs)-len(p.locs) < n {
		p.locs = make([]Locator, 0, max(2*cap(p.locs), n, 8))
	}
	l := p.locs[len(p.locs) : len(p.locs)+n : len(p.locs)+n]
	p.locs = p.locs[:len(p.locs)+n]
	return l
}

// RegisterDecoder decodes Map-Registers into storage it keeps and reuses:
// the message, its records, their locators, the authentication data and
// the xTR-ID. What Decode returns is valid only until the next Decode and
// must not be kept (copy what is stored); LCAF addresses are still
// allocated. It is for a Map-Server's receive loop, where Parse's
// allocations were a large part of a Map-Register's cost. Decode accepts
// exactly what Parse accepts as a Map-Register and gives the same value
// (FuzzRegisterDecoder). Not safe for concurrent use.
type RegisterDecoder struct {
	pool decodePool
	m    MapRegister
}

// Decode decodes the Map-Register that fills b exactly.
func (d *RegisterDecoder) Decode(b []byte) (*MapRegister, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: %d octets", ErrTruncated, len(b))
	}
	d.pool.locs = d.pool.locs[:0]
	r := reader{b: b, pool: &d.pool}
	w := r.u32()
	if t := Type(w >> 28); t != TypeMapRegister {
		return nil, fmt.Errorf("%w: %v is not a Map-Register", ErrMalformed, t)
	}
	r.register(w, &d.m)
	r.end()
	if r.err != nil {
		return nil, fmt.Errorf("%v: %w", TypeMapRegister, r.err)
	}
	return &d.m, nil
}
