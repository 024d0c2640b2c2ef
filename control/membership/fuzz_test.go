package membership

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzDecode feeds arbitrary peer bytes to Decode and to Set.ApplyBytes.
// Invariants: nothing panics; whatever decodes re-encodes to exactly the
// input (the encoding is canonical, so the hash is a function of content);
// nothing unverifiable enters a set.
func FuzzDecode(f *testing.F) {
	w := newWorld(f)
	f.Add(mustEncode(f, goldenRecord(f)))
	f.Add(mustEncode(f, w.rec(KindJoin, 65001, 100, 7, ecSigner(f, 2), "10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0", "::/0")))
	f.Add(mustEncode(f, w.rec(KindExit, 65001, 100, 8, ecSigner(f, 2))))
	// Format 2: rotation, authority request and endorsement, a cover.
	f.Add(mustEncode(f, w.recWith(KindUpdate, 65001, 0, 9, edSigner(f, 3), func(r *Record) {
		_ = r.SignRotation(ecSigner(f, 2))
		r.RequestAuthority(100)
		_ = r.AddCover(65002, netip.MustParsePrefix("10.1.2.0/25"), edSigner(f, 4))
	}, w.comm[100], "10.1.2.0/25", "2001:db8::/32")))
	f.Add([]byte{})
	f.Add([]byte{FormatVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := r.Encode()
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("not canonical:\n in %x\nout %x", b, enc)
		}
		s := NewSet(w.policy)
		changed, err := s.ApplyBytes(b)
		if changed != (err == nil) {
			t.Fatal("changed and error disagree")
		}
		if changed {
			if reason, err := w.policy.Verify(&r); reason != ReasonNone {
				t.Fatalf("accepted unverifiable record: %v", err)
			}
		}
	})
}
