package membership

import (
	"bytes"
	"net/netip"
	"testing"
)

// Fixed keys so failures are reproducible and the golden vector is stable.
func seed(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func edSigner(t testing.TB, b byte) Signer {
	t.Helper()
	s, err := NewEd25519SignerFromSeed(seed(b))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ecSigner(t testing.TB, b byte) Signer {
	t.Helper()
	s, err := NewECDSASignerFromScalar(seed(b))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// world is a small alliance: community 0 (top, Ed25519) and community 100
// (ECDSA P-256), as configured on every ACS.
type world struct {
	t      testing.TB
	comm   map[uint32]Signer
	policy *Policy
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{t: t, comm: map[uint32]Signer{0: edSigner(t, 0xC0), 100: ecSigner(t, 0xC1)}}
	keys := map[uint32][]PublicKey{}
	for ascn, s := range w.comm {
		keys[ascn] = []PublicKey{s.Public()}
	}
	p, err := NewPolicy(keys)
	if err != nil {
		t.Fatal(err)
	}
	w.policy = p
	return w
}

// rec builds, signs and endorses a record. For exits pass no prefixes.
func (w *world) rec(kind Kind, asn, ascn uint32, ver uint64, as Signer, prefixes ...string) Record {
	w.t.Helper()
	r := w.unsigned(kind, asn, ascn, ver, as, prefixes...)
	if err := r.Sign(as); err != nil {
		w.t.Fatal(err)
	}
	if err := r.Endorse(w.comm[ascn]); err != nil {
		w.t.Fatal(err)
	}
	return r
}

// recWith is rec with mod applied to the record before it is signed (to
// add a rotation, an authority request or covers) and after (to add the
// authority endorsement, given authority).
func (w *world) recWith(kind Kind, asn, ascn uint32, ver uint64, as Signer, before func(*Record), authority Signer, prefixes ...string) Record {
	w.t.Helper()
	r := w.unsigned(kind, asn, ascn, ver, as, prefixes...)
	if before != nil {
		before(&r)
	}
	if err := r.Sign(as); err != nil {
		w.t.Fatal(err)
	}
	if err := r.Endorse(w.comm[ascn]); err != nil {
		w.t.Fatal(err)
	}
	if authority != nil {
		if err := r.EndorseAuthority(authority); err != nil {
			w.t.Fatal(err)
		}
	}
	return r
}

// rotation returns a before-hook of recWith that signs the hand-over with old.
func rotation(t testing.TB, old Signer) func(*Record) {
	return func(r *Record) {
		if err := r.SignRotation(old); err != nil {
			t.Fatal(err)
		}
	}
}

func (w *world) unsigned(kind Kind, asn, ascn uint32, ver uint64, as Signer, prefixes ...string) Record {
	w.t.Helper()
	r := Record{Kind: kind, ASN: asn, ASCN: ascn, Version: ver, Key: as.Public()}
	for _, p := range prefixes {
		r.Prefixes = append(r.Prefixes, netip.MustParsePrefix(p))
	}
	if kind != KindExit {
		r.ACS = []netip.AddrPort{netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(asn)}), 4444)}
	}
	r.Canonicalize()
	return r
}

func mustEncode(t testing.TB, r Record) []byte {
	t.Helper()
	b, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
