package mapserver

import (
	"errors"
	"testing"

	"github.com/psavd/psavd/control/lisp"
)

// lispOutcome classifies lisp.AuthConfig.Verify's error as the server
// does.
func lispOutcome(site Site, pkt []byte, anyLength bool) authResult {
	ac := lisp.AuthConfig{KeyID: site.KeyID, SharedKeyID: site.SharedKeyID, Key: site.Key, AuthLen: site.AuthLen}
	if anyLength {
		ac.AuthLen = 0
	}
	err := ac.Verify(pkt)
	switch {
	case err == nil:
		return verOK
	case errors.Is(err, lisp.ErrAuthKeyID):
		return verBadKeyID
	}
	return verFailed
}

// authCases are Map-Registers, Map-Notifies and Map-Notify-Acks signed with
// every algorithm, length and key field the sites meet, some with the
// wrong key.
func authCases(t testing.TB) [][]byte {
	r := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	var out [][]byte
	for _, keyID := range []uint16{lisp.KeyIDHMACSHA1_96, lisp.KeyIDHMACSHA256128} {
		for _, full := range []bool{false, true} {
			for _, skid := range []uint8{0, 7} {
				for _, key := range [][]byte{keyA, keyB} {
					ac := lisp.AuthConfig{KeyID: keyID, SharedKeyID: skid, Key: key, AuthLen: lisp.AuthLength(keyID, full)}
					for _, m := range []lisp.Message{
						&lisp.MapRegister{WantMapNotify: true, Nonce: 5, Records: []lisp.MappingRecord{r}},
						&lisp.MapNotify{Nonce: 5, Records: []lisp.MappingRecord{r}},
						&lisp.MapNotifyAck{Nonce: 5},
					} {
						b, err := ac.Marshal(m)
						if err != nil {
							t.Fatal(err)
						}
						out = append(out, b)
					}
				}
			}
		}
	}
	return out
}

func authSites() []Site {
	var sites []Site
	for _, keyID := range []uint16{lisp.KeyIDHMACSHA1_96, lisp.KeyIDHMACSHA256128} {
		for _, n := range []int{0, lisp.AuthLength(keyID, false), lisp.AuthLength(keyID, true)} {
			for _, skid := range []uint8{0, 7} {
				sites = append(sites, Site{Name: "s", Key: keyA, KeyID: keyID, SharedKeyID: skid, AuthLen: n})
			}
		}
	}
	return sites
}

// TestSiteVerifyMatchesLisp: the site's cached-HMAC check reaches
// lisp.AuthConfig.Verify's outcome on every case — valid, wrong key, wrong
// algorithm, wrong Key ID, wrong length, truncated, corrupted.
func TestSiteVerifyMatchesLisp(t *testing.T) {
	cases := authCases(t)
	for _, b := range authCases(t) {
		c := append([]byte(nil), b...)
		c[len(c)-1] ^= 1
		cases = append(cases, c, b[:len(b)-1], b[:15], b[:offAuth+2])
	}
	ok := 0
	for _, site := range authSites() {
		st := &siteState{Site: site}
		for i, pkt := range cases {
			for _, anyLen := range []bool{false, true} {
				got := st.check(pkt, site.AuthLen)
				if anyLen {
					got = st.verifyAnyLength(pkt)
				}
				if want := lispOutcome(site, pkt, anyLen); got != want {
					t.Fatalf("site %+v case %d (any length %v): %d, lisp says %d", site, i, anyLen, got, want)
				}
				if got == verOK {
					ok++
				}
			}
		}
	}
	if ok == 0 {
		t.Fatal("no case verified")
	}
}

// TestSignMatchesLisp: a Map-Notify signed with the site's cached HMAC is
// the one lisp.AuthConfig.Marshal builds.
func TestSignMatchesLisp(t *testing.T) {
	r := rec(pfx("10.1.0.0/16"), nil, "192.0.2.10")
	for _, site := range authSites() {
		n := site.AuthLen
		if n == 0 {
			n = lisp.AuthLength(site.KeyID, true)
		}
		st := &siteState{Site: site}
		for range 2 { // a second time with the kept state
			b, err := (&lisp.MapNotify{Nonce: 9, KeyID: lisp.KeyField(site.SharedKeyID, site.KeyID), AuthData: zeroAuth[:n],
				Records: []lisp.MappingRecord{r}}).Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			st.sign(b)
			want, err := lisp.AuthConfig{KeyID: site.KeyID, SharedKeyID: site.SharedKeyID, Key: site.Key, AuthLen: n}.
				Marshal(&lisp.MapNotify{Nonce: 9, Records: []lisp.MappingRecord{r}})
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != string(want) {
				t.Fatalf("site %+v: signed %x, lisp %x", site, b, want)
			}
		}
	}
}

// FuzzSiteVerify: on any input the cached-HMAC check never panics and
// agrees with lisp.AuthConfig.Verify.
func FuzzSiteVerify(f *testing.F) {
	for _, b := range authCases(f) {
		f.Add(b)
	}
	sites := authSites()
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, site := range sites {
			st := &siteState{Site: site}
			if got, want := st.verify(pkt), lispOutcome(site, pkt, false); got != want {
				t.Fatalf("site %+v: %d, lisp says %d", site, got, want)
			}
		}
	})
}
