// Package lispload is a LISP Map-Server load generator and the benchmark
// built on it (bench/cmd/msbench, docs/perf.md): Map-Registers with the M
// bit, HMAC-SHA-1 with 20 octets of authentication data (what OOR and
// lispers.net send), a fixed number in flight, each one a new /32 EID or a
// refresh of one already registered, counting the Map-Notifies that come
// back. The same generator drives psavd's Map-Server and OOR's in the same
// run, so their rates compare.
//
// The generator must outrun the servers on the same two cores, so a
// message costs it no allocation and no encoding: one Map-Register is
// encoded once with psavd's codec and each message patches its nonce and
// EID into a copy and signs it with an HMAC whose keyed state is reused
// (hmac Reset), and datagrams go out and come in by sendmmsg/recvmmsg
// (the window as UDP GSO messages where the kernel has it).
//
// By default every Map-Register comes from one address and port, as from
// one ETR with a great many EID prefixes; Config.Sources spreads them
// over many source addresses, as from many ETRs.
package lispload

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/internal/udpgso"
)

// AuthLen is the authentication data length sent: untruncated HMAC-SHA-1.
const AuthLen = 20

// Markers the template is encoded with, found again to learn the offsets
// of the nonce and the EID (the codec stays the one authority on layout).
const (
	markNonce = 0x5a17_c0de_0bad_f00d
	markEID   = 0x0aabcdef // 10.171.205.239
)

// Gen sends Map-Registers to one Map-Server over one UDP socket.
type Gen struct {
	conn   *net.UDPConn
	pc     *ipv4.PacketConn
	to     *net.UDPAddr
	key    []byte
	mac    hash.Hash
	sum    []byte
	tmpl   []byte
	offN   int // nonce
	offE   int // EID (IPv4)
	base   uint32
	nonce  uint64
	window int

	out, in []ipv4.Message
	// With UDP GSO (Linux) each sendmmsg carries the window as messages of
	// up to gsoSegments equal-size Map-Registers (bufs: out's buffers,
	// flat; oob: the UDP_SEGMENT option): the generator's own sending is
	// then cheap, so that it measures the server, not itself. The server
	// still receives one datagram per Map-Register (neither psavd nor OOR
	// asks for UDP_GRO), as from many ETRs.
	gso     bool
	bufs    [][]byte
	oob     []byte
	gsoMsgs []ipv4.Message
	srcOOB  [][]byte // IP_PKTINFO per source (Config.Sources)

	// Table is the number of distinct EIDs registered so far (the next new
	// EID is base+Table); refreshes cycle through them from refreshAt.
	Table     int
	refreshAt int
}

// Config configures a Gen.
type Config struct {
	Conn   *net.UDPConn   // unconnected, bound where the server can answer
	To     netip.AddrPort // the Map-Server
	Key    []byte         // the site key (HMAC-SHA-1)
	Base   netip.Addr     // first EID (IPv4); EIDs are Base, Base+1, …
	RLOC   netip.Addr     // the locator registered
	Window int            // Map-Registers in flight (default 64)
	// Sources, when set, are local addresses the Map-Registers are sent
	// from (IP_PKTINFO; Conn must then be bound to the wildcard address),
	// EID i always from Sources[i mod len], so that a refresh comes from
	// the ETR that registered: the server sees that many ETRs, the answers
	// of one batch go to different destinations, and the generator sends
	// without GSO.
	Sources []netip.Addr
}

// New returns a Gen for c.
func New(c Config) (*Gen, error) {
	if c.Window <= 0 {
		c.Window = 64
	}
	if !c.Base.Is4() || !c.RLOC.IsValid() {
		return nil, errors.New("lispload: Base must be IPv4 and RLOC set")
	}
	tmpl, err := lisp.AuthConfig{KeyID: lisp.KeyIDHMACSHA1_96, Key: c.Key, AuthLen: AuthLen}.Marshal(&lisp.MapRegister{
		WantMapNotify: true, Nonce: markNonce,
		Records: []lisp.MappingRecord{{TTL: 1440, EIDMaskLen: 32, Authoritative: true,
			EID:      lisp.IPAddr(netip.AddrFrom4([4]byte{10, 171, 205, 239})),
			Locators: []lisp.Locator{{Priority: 1, Weight: 100, MPriority: 255, Reachable: true, Address: lisp.IPAddr(c.RLOC)}}}},
	})
	if err != nil {
		return nil, err
	}
	var nb [8]byte
	binary.BigEndian.PutUint64(nb[:], markNonce)
	var eb [4]byte
	binary.BigEndian.PutUint32(eb[:], markEID)
	g := &Gen{conn: c.Conn, pc: ipv4.NewPacketConn(c.Conn), to: net.UDPAddrFromAddrPort(c.To), key: c.Key,
		mac: hmac.New(sha1.New, c.Key), sum: make([]byte, 0, sha1.Size), tmpl: tmpl,
		offN: bytes.Index(tmpl, nb[:]), offE: bytes.LastIndex(tmpl, eb[:]),
		base: binary.BigEndian.Uint32(c.Base.AsSlice()), nonce: uint64(time.Now().UnixNano()), window: c.Window}
	if g.offN < 0 || g.offE < 0 || lisp.AuthDataLen(tmpl) != AuthLen {
		return nil, errors.New("lispload: template offsets not found")
	}
	g.out = make([]ipv4.Message, c.Window)
	g.in = make([]ipv4.Message, c.Window)
	for i := range g.out {
		g.out[i] = ipv4.Message{Buffers: [][]byte{make([]byte, len(tmpl))}, Addr: g.to}
		g.in[i].Buffers = [][]byte{make([]byte, 2048)}
		g.bufs = append(g.bufs, g.out[i].Buffers[0])
	}
	g.gso, g.oob = udpgso.Available, udpgso.Append(nil, len(tmpl))
	for _, src := range c.Sources {
		if !src.Is4() {
			return nil, errors.New("lispload: Sources must be IPv4")
		}
		g.srcOOB = append(g.srcOOB, (&ipv4.ControlMessage{Src: src.AsSlice()}).Marshal())
		g.gso = false
	}
	_ = c.Conn.SetReadBuffer(4 << 20)
	_ = c.Conn.SetWriteBuffer(4 << 20)
	return g, nil
}

// authLo is where the authentication data starts (RFC 9301 §5.6: after the
// type/flags word, the nonce, key id and length).
const authLo = 16

// fill writes Map-Register i (the EID at index eid) into b and signs it.
func (g *Gen) fill(b []byte, eid int) {
	copy(b, g.tmpl)
	g.nonce++
	binary.BigEndian.PutUint64(b[g.offN:], g.nonce)
	binary.BigEndian.PutUint32(b[g.offE:], g.base+uint32(eid))
	clear(b[authLo : authLo+AuthLen])
	g.mac.Reset()
	g.mac.Write(b)
	g.sum = g.mac.Sum(g.sum[:0])
	copy(b[authLo:], g.sum)
}

// gsoSegments is the most segments per message (the kernel's oldest
// UDP_MAX_SEGMENTS).
const gsoSegments = 64

// send sends the first k Map-Registers of out.
func (g *Gen) send(k int) error {
	from := 0
	if g.gso {
		g.gsoMsgs = g.gsoMsgs[:0]
		for i := 0; i < k; i += gsoSegments {
			j := min(k, i+gsoSegments)
			g.gsoMsgs = append(g.gsoMsgs, ipv4.Message{Buffers: g.bufs[i:j:j], Addr: g.to, OOB: g.oob})
		}
		sent := 0
		for sent < len(g.gsoMsgs) {
			m, err := g.pc.WriteBatch(g.gsoMsgs[sent:], 0)
			if err != nil {
				break
			}
			sent += m
		}
		if sent == len(g.gsoMsgs) {
			return nil
		}
		// Refused (no UDP_SEGMENT here): the rest one by one, from now on.
		g.gso, from = false, sent*gsoSegments
	}
	for sent := from; sent < k; {
		m, err := g.pc.WriteBatch(g.out[sent:k], 0)
		if err != nil {
			return fmt.Errorf("lispload: send: %w", err)
		}
		sent += m
	}
	return nil
}

// Round is the outcome of one round.
type Round struct {
	Sent     int
	Notifies int // Map-Notifies received
	Lost     int // Map-Registers given up on (no answer within the timeout)
	Elapsed  time.Duration
	Table    int // EIDs registered when the round ended
}

// Rate is Map-Notifies per second.
func (r Round) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Notifies) / r.Elapsed.Seconds()
}

// ErrBadNotify is returned when a sampled Map-Notify does not verify with
// the site key: the server answers, but not correctly.
var ErrBadNotify = errors.New("lispload: a Map-Notify does not verify")

// Run sends n Map-Registers, keeping the window in flight, each for a new
// EID (refresh false: the table grows by n) or a refresh of a registered
// one (refresh true), and waits for their Map-Notifies. Answers missing for
// timeout count as lost and their places in the window are refilled.
func (g *Gen) Run(n int, refresh bool, timeout time.Duration) (Round, error) {
	if refresh && g.Table == 0 {
		return Round{}, errors.New("lispload: nothing registered to refresh")
	}
	var r Round
	inflight := 0
	start := time.Now()
	lastAnswer := start
	deadlineSet := time.Time{}
	for r.Sent < n || inflight > 0 {
		k := 0
		for inflight+k < g.window && r.Sent+k < n {
			eid := g.Table
			if refresh {
				eid = g.refreshAt
				g.refreshAt = (g.refreshAt + 1) % g.Table
			} else {
				g.Table++
			}
			g.fill(g.out[k].Buffers[0], eid)
			if len(g.srcOOB) > 0 {
				g.out[k].OOB = g.srcOOB[eid%len(g.srcOOB)]
			}
			k++
		}
		if err := g.send(k); err != nil {
			return r, err
		}
		r.Sent += k
		inflight += k
		if inflight == 0 {
			break
		}
		// A read deadline costs a timer update: moved only every few ms.
		if now := time.Now(); now.Sub(deadlineSet) > 5*time.Millisecond {
			_ = g.conn.SetReadDeadline(now.Add(timeout / 4))
			deadlineSet = now
		}
		m, err := g.pc.ReadBatch(g.in, 0)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return r, fmt.Errorf("lispload: receive: %w", err)
			}
			if time.Since(lastAnswer) >= timeout {
				r.Lost += inflight
				inflight = 0
				lastAnswer = time.Now()
			}
			deadlineSet = time.Time{}
			continue
		}
		lastAnswer = time.Now()
		for _, msg := range g.in[:m] {
			b := msg.Buffers[0][:msg.N]
			if len(b) == 0 || lisp.Type(b[0]>>4) != lisp.TypeMapNotify {
				continue
			}
			r.Notifies++
			if inflight > 0 {
				inflight--
			}
			// Every 4096th answer is checked: signed with the site key.
			if r.Notifies%4096 == 1 {
				if err := lisp.Verify(b, g.key); err != nil {
					return r, fmt.Errorf("%w: %v", ErrBadNotify, err)
				}
			}
		}
	}
	r.Elapsed = time.Since(start)
	r.Table = g.Table
	return r, nil
}
