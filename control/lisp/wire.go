package lisp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Decoding and encoding errors. Decoders wrap one of these with context;
// test with errors.Is.
var (
	ErrTruncated   = errors.New("lisp: truncated message")
	ErrTrailing    = errors.New("lisp: trailing octets after message")
	ErrMalformed   = errors.New("lisp: malformed message")
	ErrUnknownAFI  = errors.New("lisp: unsupported AFI")
	ErrUnknownType = errors.New("lisp: unsupported message type")
	ErrInvalid     = errors.New("lisp: message cannot be encoded")
)

// reader is a bounds-checked cursor. After the first failure every method
// returns zero values and err keeps the first error, so decoders can read a
// whole structure and check err once.
type reader struct {
	b   []byte
	off int
	err error
	// pool, when set, is storage the records and locators are carved
	// from instead of allocated (RegisterDecoder).
	pool *decodePool
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

func (r *reader) remaining() int { return len(r.b) - r.off }

func (r *reader) bytes(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.remaining() {
		r.fail(fmt.Errorf("%w: need %d octets at offset %d, have %d", ErrTruncated, n, r.off, r.remaining()))
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

func (r *reader) u8() uint8 {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *reader) u16() uint16 {
	v := r.bytes(2)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

func (r *reader) u32() uint32 {
	v := r.bytes(4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (r *reader) u64() uint64 {
	v := r.bytes(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// need fails unless at least n octets remain; used to refuse a count before
// allocating for it.
func (r *reader) need(n int, what string) {
	if r.err == nil && n > r.remaining() {
		r.fail(fmt.Errorf("%w: %s needs at least %d octets, have %d", ErrTruncated, what, n, r.remaining()))
	}
}

func (r *reader) end() {
	if r.err == nil && r.remaining() != 0 {
		r.fail(fmt.Errorf("%w: %d octets", ErrTrailing, r.remaining()))
	}
}
