package adot

import (
	"time"

	"github.com/miekg/dns"
)

// Block lengths of RFC 8467 §4.1's recommended policy: queries are padded
// to a multiple of 128 octets, responses to a multiple of 468.
const (
	QueryPadBlock    = 128
	ResponsePadBlock = 468
)

// ednsUDPSize is the payload size announced in our OPT records (no
// fragmentation on the usual paths; meaningless over TLS but required).
const ednsUDPSize = 1232

// packPadded packs m (which must carry an OPT record) with an EDNS(0)
// Padding option (RFC 7830) sized so that the message is a multiple of
// block octets; any Padding option already there is replaced. A message
// that would exceed the DNS maximum when padded is packed unpadded.
func packPadded(m *dns.Msg, block int) ([]byte, error) {
	opt := m.IsEdns0()
	if opt == nil {
		return m.Pack()
	}
	kept := opt.Option[:0]
	for _, o := range opt.Option {
		if o.Option() != dns.EDNS0PADDING {
			kept = append(kept, o)
		}
	}
	pad := &dns.EDNS0_PADDING{}
	opt.Option = append(kept, pad)
	wire, err := m.Pack()
	if err != nil {
		return nil, err
	}
	n := (block - len(wire)%block) % block
	if n == 0 || len(wire)+n > dns.MaxMsgSize {
		return wire, nil
	}
	pad.Padding = make([]byte, n)
	return m.Pack()
}

// hasPadding reports whether m's OPT carries a Padding option.
func hasPadding(m *dns.Msg) bool {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if o.Option() == dns.EDNS0PADDING {
				return true
			}
		}
	}
	return false
}

// keepalive returns the edns-tcp-keepalive option of m (RFC 7828) and
// whether there is one.
func keepalive(m *dns.Msg) (*dns.EDNS0_TCP_KEEPALIVE, bool) {
	if opt := m.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if k, ok := o.(*dns.EDNS0_TCP_KEEPALIVE); ok {
				return k, true
			}
		}
	}
	return nil, false
}

// keepaliveUnits is d in the option's units of 100 ms, at most 65535.
func keepaliveUnits(d time.Duration) uint16 {
	return uint16(min(d/(100*time.Millisecond), 65535))
}

// followKeepalive is how long the client keeps an idle connection when the
// server advertised an idle timeout of adv: a margin before it (a fifth,
// at least 200 ms) so that the client closes first and never writes into
// a connection the server is closing; at most own.
func followKeepalive(adv, own time.Duration) time.Duration {
	limit := adv - max(adv/5, 200*time.Millisecond)
	return max(0, min(own, limit))
}
