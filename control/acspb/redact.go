package acspb

import (
	"crypto/sha256"
	"encoding/hex"

	"google.golang.org/protobuf/proto"
)

// KeyFingerprint is how a tag key is shown to people: the first four
// octets of its SHA-256, in hex. Both ends of a pair show the same
// fingerprint for the same epoch, which is what an operator compares.
func KeyFingerprint(key []byte) string {
	h := sha256.Sum256(key)
	return hex.EncodeToString(h[:4])
}

// Redacted returns a copy of t in which every key is replaced by its
// fingerprint: what operators' calls answer (the ACS's OperatorTables, the
// node's management socket), since no tool needs a key.
func Redacted(t *Tables) *Tables {
	c := proto.Clone(t).(*Tables)
	for _, p := range c.Peers {
		for _, k := range p.Keys {
			k.Fingerprint = KeyFingerprint(k.Key)
			clear(k.Key)
			k.Key = nil
		}
	}
	return c
}
