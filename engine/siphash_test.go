package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/dchest/siphash"
	"github.com/psavd/psavd/engine"
)

// TestComputeTagIsSipHash: ComputeTag's SipHash, written out for the tag's
// 34-octet message, equals the reference SipHash-2-4 of that message on
// random keys, addresses and octets.
func TestComputeTagIsSipHash(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 100000; i++ {
		k0, k1 := r.Uint64(), r.Uint64()
		var src, dst [16]byte
		for j := range src {
			src[j], dst[j] = byte(r.Uint32()), byte(r.Uint32())
		}
		first, bits := byte(r.Uint32()), byte(r.Uint32())
		msg := append(append(append([]byte(nil), src[:]...), dst[:]...), first, bits)
		if got, want := engine.ComputeTag(k0, k1, &src, &dst, first, bits), siphash.Hash(k0, k1, msg); got != want {
			t.Fatalf("ComputeTag = %016x, SipHash-2-4 = %016x (k %x %x, msg %x)", got, want, k0, k1, msg)
		}
	}
}
