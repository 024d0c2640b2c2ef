// Pull-based LISP-Decent hashing (docs/wire.md §3.4): which DNS name,
// <index>.<suffix>, owns an EID. The package documentation is in doc.go.

package pull

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"net/netip"
	"strconv"
)

// HashMode selects how an EID string becomes an index (docs/wire.md §3.4).
type HashMode int

const (
	// ModeDraft: SHA-256 of the EID string (only its first `mask` octets
	// when mask > 0) as a big-endian integer, mod modulus. The mask is what
	// makes a more-specific look-up land where its covering prefix was
	// registered.
	ModeDraft HashMode = iota
	// ModeLispersNet: the first 6 octets of HMAC-SHA256(key "lisp-decent",
	// EID string) as a big-endian integer, mod modulus; no mask. Compatible
	// with the lispers.net reference implementation.
	ModeLispersNet
)

// ParseMode reads "draft" or "lispers.net".
func ParseMode(s string) (HashMode, error) {
	switch s {
	case "draft":
		return ModeDraft, nil
	case "lispers.net":
		return ModeLispersNet, nil
	}
	return 0, fmt.Errorf("hash mode %q is not draft or lispers.net", s)
}

func (m HashMode) String() string {
	if m == ModeLispersNet {
		return "lispers.net"
	}
	return "draft"
}

// EIDString is the hash input of a unicast EID prefix: "[<iid>]<eid>/<ml>",
// the address in its canonical text form (RFC 5952 for IPv6).
func EIDString(iid uint32, p netip.Prefix) string {
	return "[" + strconv.FormatUint(uint64(iid), 10) + "]" + p.Masked().String()
}

// MulticastEIDString is the hash input of an (S, G) entry in the given
// mode. ModeDraft: "[<iid>]<group>/<gml>-<source>/<sml>". ModeLispersNet:
// "[<iid>]<group address>/<host length>", the group alone, as lispers.net
// hashes it: an ITR looking up a group cannot know whether (*, G) or which
// (S, G) was registered, so the source takes no part, and the group is the
// address (32 or 128 bits) whatever the registered group mask.
func MulticastEIDString(mode HashMode, iid uint32, group, source netip.Prefix) string {
	prefix := "[" + strconv.FormatUint(uint64(iid), 10) + "]"
	if mode == ModeLispersNet {
		return prefix + netip.PrefixFrom(group.Addr(), group.Addr().BitLen()).String()
	}
	return prefix + group.Masked().String() + "-" + source.Masked().String()
}

// Index returns the index that owns the EID string input. mask (octets) is
// used by ModeDraft only; modulus must be positive.
func Index(mode HashMode, input string, mask int, modulus uint64) (uint64, error) {
	if modulus == 0 {
		return 0, fmt.Errorf("modulus must be positive")
	}
	if mask < 0 {
		return 0, fmt.Errorf("hash mask must not be negative")
	}
	b := []byte(input)
	switch mode {
	case ModeDraft:
		if mask > 0 && mask < len(b) {
			b = b[:mask]
		}
		sum := sha256.Sum256(b)
		var q big.Int
		q.SetBytes(sum[:])
		return q.Mod(&q, new(big.Int).SetUint64(modulus)).Uint64(), nil
	case ModeLispersNet:
		m := hmac.New(sha256.New, []byte("lisp-decent"))
		m.Write(b)
		var first [8]byte
		copy(first[2:], m.Sum(nil)[:6])
		return binary.BigEndian.Uint64(first[:]) % modulus, nil
	}
	return 0, fmt.Errorf("unknown hash mode %d", mode)
}

// Name is the DNS name of an index: "<index>.<suffix>".
func Name(index uint64, suffix string) string {
	return strconv.FormatUint(index, 10) + "." + suffix
}
