package mapserver

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"hash"

	"github.com/psavd/psavd/control/lisp"
)

// authResult is the outcome of checking a message with a site's key.
type authResult int

const (
	verOK       authResult = iota
	verBadKeyID            // the key field is not the site's (lisp.ErrAuthKeyID)
	verFailed              // malformed field, length not allowed, or the HMAC differs
)

// RFC 9301 §5.6/§5.7: the key field and the authentication length follow
// the type word and the nonce; the authentication data comes next.
const (
	offKeyField = 12
	offAuthLen  = 14
	offAuth     = 16
)

var zeroAuth [lisp.AuthLenSHA256Full]byte

// verify is lisp.AuthConfig{KeyID, SharedKeyID, Key, AuthLen} of the site
// .Verify(pkt) — the same checks, in the same order, to the same outcome
// (TestSiteVerifyMatchesLisp) — with the site's keyed HMAC kept between
// messages: hmac.New per message (two hash states and both key pads) was
// a fifth of a Map-Register's cost, and a Map-Server checks every one.
func (st *siteState) verify(pkt []byte) authResult {
	return st.check(pkt, st.AuthLen)
}

// verifyAnyLength is verify without the site's AuthLen restriction (a
// Map-Notify-Ack: lisp.AuthConfig without AuthLen).
func (st *siteState) verifyAnyLength(pkt []byte) authResult {
	return st.check(pkt, 0)
}

func (st *siteState) check(pkt []byte, authLen int) authResult {
	if len(pkt) < offAuth {
		return verFailed
	}
	switch lisp.Type(pkt[0] >> 4) {
	case lisp.TypeMapRegister, lisp.TypeMapNotify, lisp.TypeMapNotifyAck:
	default:
		return verFailed
	}
	field := binary.BigEndian.Uint16(pkt[offKeyField:])
	n := int(binary.BigEndian.Uint16(pkt[offAuthLen:]))
	if offAuth+n > len(pkt) {
		return verFailed
	}
	if field != lisp.KeyField(st.SharedKeyID, st.KeyID) {
		return verBadKeyID
	}
	if authLen != 0 && n != authLen {
		return verFailed
	}
	_, alg := lisp.SplitKeyField(field)
	if n == 0 || (n != lisp.AuthLength(alg, false) && n != lisp.AuthLength(alg, true)) {
		return verFailed
	}
	sum := st.hmacOf(pkt, n)
	if sum == nil || !hmac.Equal(sum[:n], pkt[offAuth:offAuth+n]) {
		return verFailed
	}
	return verOK
}

// sign fills the authentication data of an encoded Map-Notify whose field
// is zero (as Append leaves it) with the site key's HMAC.
func (st *siteState) sign(b []byte) {
	n := int(binary.BigEndian.Uint16(b[offAuthLen:]))
	if sum := st.hmacOf(b, n); sum != nil {
		copy(b[offAuth:offAuth+n], sum)
	}
}

// hmacOf is the HMAC of msg with its n octets of authentication data
// taken as zero (lisp.Sign / lisp.Verify's definition), in st.sum.
func (st *siteState) hmacOf(msg []byte, n int) []byte {
	if st.mac == nil {
		var h func() hash.Hash
		switch st.KeyID & 0xff {
		case lisp.KeyIDHMACSHA1_96:
			h = sha1.New
		case lisp.KeyIDHMACSHA256128:
			h = sha256.New
		default:
			return nil
		}
		st.mac = hmac.New(h, st.Key)
		st.sum = make([]byte, 0, st.mac.Size())
	}
	st.mac.Reset()
	st.mac.Write(msg[:offAuth])
	for z := n; z > 0; {
		k := min(z, len(zeroAuth))
		st.mac.Write(zeroAuth[:k])
		z -= k
	}
	st.mac.Write(msg[offAuth+n:])
	st.sum = st.mac.Sum(st.sum[:0])
	return st.sum
}
