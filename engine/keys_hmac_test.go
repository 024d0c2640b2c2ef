package engine

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"testing"
)

// The hand-written HMAC equals crypto/hmac's for random states and both
// messages it is used with.
func TestHMACStateMatchesCryptoHMAC(t *testing.T) {
	for range 200 {
		var s State
		rand.Read(s[:])
		for _, msg := range []string{"psav state", "psav tag key", ""} {
			m := hmac.New(sha256.New, s[:])
			m.Write([]byte(msg))
			if got, want := hmacState(&s, msg), m.Sum(nil); string(got[:]) != string(want) {
				t.Fatalf("state %x, %q: %x, want %x", s, msg, got, want)
			}
		}
	}
}
