package lisp

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
)

// Authentication algorithms. RFC 9301 §5.6 splits the 16-bit field of
// RFC 6833 into an 8-bit Key ID (which pre-shared key) and an 8-bit
// Algorithm ID; the values below are the whole field with Key ID 0, which is
// what RFC 6833 implementations send for "key id 1/2". Functions taking a
// keyID read the algorithm from its low octet, so they take the whole field
// (KeyField) as well.
const (
	KeyIDNone          uint16 = 0
	KeyIDHMACSHA1_96   uint16 = 1
	KeyIDHMACSHA256128 uint16 = 2
)

// Authentication data lengths: the RFC (truncated) lengths and the
// untruncated HMAC lengths other implementations send.
const (
	AuthLenSHA1_96    = 12
	AuthLenSHA256_128 = 16
	AuthLenSHA1Full   = sha1.Size   // 20, OOR and lispers.net
	AuthLenSHA256Full = sha256.Size // 32, lispers.net
)

// AuthErrorCode classifies an AuthError.
type AuthErrorCode int

// Authentication failure codes.
const (
	AuthBadMessage AuthErrorCode = iota + 1 // not a Map-Register/Notify/Notify-Ack, or too short
	AuthBadKeyID                            // key id unknown, or not the expected one
	AuthBadLength                           // authentication data length not allowed for the key id
	AuthMismatch                            // HMAC does not verify
)

// AuthError is the error Sign and Verify return. errors.Is matches it
// against ErrAuthBadMessage, ErrAuthKeyID, ErrAuthLength and ErrAuthMismatch
// by code.
type AuthError struct {
	Code   AuthErrorCode
	KeyID  uint16
	Length int
}

// Sentinels for errors.Is.
var (
	ErrAuthBadMessage = &AuthError{Code: AuthBadMessage}
	ErrAuthKeyID      = &AuthError{Code: AuthBadKeyID}
	ErrAuthLength     = &AuthError{Code: AuthBadLength}
	ErrAuthMismatch   = &AuthError{Code: AuthMismatch}
)

func (e *AuthError) Error() string {
	switch e.Code {
	case AuthBadMessage:
		return "lisp auth: message carries no authentication field"
	case AuthBadKeyID:
		return fmt.Sprintf("lisp auth: unsupported or unexpected key id %d", e.KeyID)
	case AuthBadLength:
		return fmt.Sprintf("lisp auth: authentication data length %d not allowed for key id %d", e.Length, e.KeyID)
	case AuthMismatch:
		return fmt.Sprintf("lisp auth: authentication data does not verify (key id %d, %d octets)", e.KeyID, e.Length)
	}
	return "lisp auth: error"
}

// Is matches AuthErrors by code.
func (e *AuthError) Is(target error) bool {
	t, ok := target.(*AuthError)
	return ok && t.Code == e.Code
}

// AuthLength returns the authentication data length for keyID: the RFC
// (truncated) length, or the full HMAC length when full is set. It returns
// 0 for an unknown key id.
func AuthLength(keyID uint16, full bool) int {
	switch keyID & 0xff {
	case KeyIDHMACSHA1_96:
		if full {
			return AuthLenSHA1Full
		}
		return AuthLenSHA1_96
	case KeyIDHMACSHA256128:
		if full {
			return AuthLenSHA256Full
		}
		return AuthLenSHA256_128
	}
	return 0
}

// KeyField is the 16-bit Key ID / Algorithm ID field of RFC 9301 §5.6:
// sharedKeyID in the high octet, the algorithm in the low one.
func KeyField(sharedKeyID uint8, algorithm uint16) uint16 {
	return uint16(sharedKeyID)<<8 | algorithm&0xff
}

// SplitKeyField returns the RFC 9301 Key ID and Algorithm ID of field.
func SplitKeyField(field uint16) (sharedKeyID uint8, algorithm uint16) {
	return uint8(field >> 8), field & 0xff
}

func authHash(keyID uint16) func() hash.Hash {
	switch keyID & 0xff {
	case KeyIDHMACSHA1_96:
		return sha1.New
	case KeyIDHMACSHA256128:
		return sha256.New
	}
	return nil
}

func authLenOK(keyID uint16, n int) bool {
	return n == AuthLength(keyID, false) || n == AuthLength(keyID, true)
}

// authField locates the key id and authentication data of an encoded
// Map-Register, Map-Notify or Map-Notify-Ack.
func authField(msg []byte) (keyID uint16, lo, hi int, err error) {
	if len(msg) < offAuthData {
		return 0, 0, 0, ErrAuthBadMessage
	}
	switch Type(msg[0] >> 4) {
	case TypeMapRegister, TypeMapNotify, TypeMapNotifyAck:
	default:
		return 0, 0, 0, ErrAuthBadMessage
	}
	keyID = binary.BigEndian.Uint16(msg[offKeyID:])
	n := int(binary.BigEndian.Uint16(msg[offAuthLen:]))
	if offAuthData+n > len(msg) {
		return keyID, 0, 0, ErrAuthBadMessage
	}
	return keyID, offAuthData, offAuthData + n, nil
}

func computeAuth(msg []byte, keyID uint16, key []byte, lo, hi int) []byte {
	mac := hmac.New(authHash(keyID), key)
	mac.Write(msg[:lo])
	var zero [64]byte
	for n := hi - lo; n > 0; {
		k := min(n, len(zero))
		mac.Write(zero[:k])
		n -= k
	}
	mac.Write(msg[hi:])
	return mac.Sum(nil)[:hi-lo]
}

// Sign fills the authentication data of an encoded Map-Register, Map-Notify
// or Map-Notify-Ack in place with the HMAC of the whole message computed
// with that field zeroed. The message must already carry keyID and an
// authentication field of authLen octets (authLen 0 means the RFC length);
// authLen must be the RFC or the untruncated length for keyID.
func Sign(msg []byte, keyID uint16, key []byte, authLen int) error {
	if authHash(keyID) == nil {
		return &AuthError{Code: AuthBadKeyID, KeyID: keyID}
	}
	if authLen == 0 {
		authLen = AuthLength(keyID, false)
	}
	if !authLenOK(keyID, authLen) {
		return &AuthError{Code: AuthBadLength, KeyID: keyID, Length: authLen}
	}
	got, lo, hi, err := authField(msg)
	if err != nil {
		return err
	}
	if got != keyID {
		return &AuthError{Code: AuthBadKeyID, KeyID: got}
	}
	if hi-lo != authLen {
		return &AuthError{Code: AuthBadLength, KeyID: keyID, Length: hi - lo}
	}
	copy(msg[lo:hi], computeAuth(msg, keyID, key, lo, hi))
	return nil
}

// Verify checks the authentication data of an encoded Map-Register,
// Map-Notify or Map-Notify-Ack against key. Key ids 1 (HMAC-SHA-1-96) and 2
// (HMAC-SHA-256-128) are accepted, each with the RFC length (12, 16) or the
// untruncated length (20, 32).
func Verify(msg []byte, key []byte) error {
	keyID, lo, hi, err := authField(msg)
	if err != nil {
		return err
	}
	if authHash(keyID) == nil {
		return &AuthError{Code: AuthBadKeyID, KeyID: keyID}
	}
	if !authLenOK(keyID, hi-lo) {
		return &AuthError{Code: AuthBadLength, KeyID: keyID, Length: hi - lo}
	}
	want := computeAuth(msg, keyID, key, lo, hi)
	if !hmac.Equal(want, msg[lo:hi]) {
		return &AuthError{Code: AuthMismatch, KeyID: keyID, Length: hi - lo}
	}
	return nil
}

// AuthConfig is the authentication a peer (typically a Map-Server) is
// configured with. KeyID is the algorithm (KeyIDHMACSHA1_96,
// KeyIDHMACSHA256128); SharedKeyID the RFC 9301 Key ID naming the
// pre-shared key (0 for RFC 6833 peers), sent in the high octet. AuthLen
// selects the length of the authentication data we send: 0 sends the RFC
// length (12 or 16); AuthLength(KeyID, true) sends the untruncated HMAC
// that deployed Map-Servers (OOR, lispers.net) expect. Received messages are
// checked with Verify, which accepts either length, plus the key field.
type AuthConfig struct {
	KeyID       uint16
	SharedKeyID uint8
	Key         []byte
	AuthLen     int
}

// Field is the Key ID / Algorithm ID field c sends and expects.
func (c AuthConfig) Field() uint16 { return KeyField(c.SharedKeyID, c.KeyID) }

// Marshal encodes a *MapRegister, *MapNotify or *MapNotifyAck with c's key
// id and a signed authentication field. m is not modified.
func (c AuthConfig) Marshal(m Message) ([]byte, error) {
	n := c.AuthLen
	if n == 0 {
		n = AuthLength(c.KeyID, false)
	}
	if authHash(c.KeyID) == nil {
		return nil, &AuthError{Code: AuthBadKeyID, KeyID: c.KeyID}
	}
	if !authLenOK(c.KeyID, n) {
		return nil, &AuthError{Code: AuthBadLength, KeyID: c.KeyID, Length: n}
	}
	zero := make([]byte, n)
	f := c.Field()
	switch v := m.(type) {
	case *MapRegister:
		x := *v
		x.KeyID, x.AuthData = f, zero
		m = &x
	case *MapNotify:
		x := *v
		x.KeyID, x.AuthData = f, zero
		m = &x
	case *MapNotifyAck:
		x := *v
		x.KeyID, x.AuthData = f, zero
		m = &x
	default:
		return nil, ErrAuthBadMessage
	}
	b, err := m.Append(nil)
	if err != nil {
		return nil, err
	}
	return b, Sign(b, f, c.Key, n)
}

// Verify checks msg's authentication data with c.Key and that it uses
// c's key field (algorithm and shared key id); with c.AuthLen set, also
// that length.
func (c AuthConfig) Verify(msg []byte) error {
	keyID, lo, hi, err := authField(msg)
	if err != nil {
		return err
	}
	if keyID != c.Field() {
		return &AuthError{Code: AuthBadKeyID, KeyID: keyID}
	}
	if c.AuthLen != 0 && hi-lo != c.AuthLen {
		return &AuthError{Code: AuthBadLength, KeyID: keyID, Length: hi - lo}
	}
	return Verify(msg, c.Key)
}

// AuthDataLen returns the length of the authentication data of an encoded
// Map-Register, Map-Notify or Map-Notify-Ack (0 when msg has none).
func AuthDataLen(msg []byte) int {
	_, lo, hi, err := authField(msg)
	if err != nil {
		return 0
	}
	return hi - lo
}
