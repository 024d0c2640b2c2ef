package xtr

import (
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

// Locator is one RLOC of a database mapping.
type Locator struct {
	Addr     netip.Addr
	Priority uint8
	Weight   uint8
}

// Mapping is one database mapping: an EID prefix of this site and its RLOCs.
type Mapping struct {
	EID      netip.Prefix
	Locators []Locator
}

// MapServer is one Map-Server the ETR registers with.
type MapServer struct {
	Addr       netip.AddrPort
	Auth       lisp.AuthConfig
	WantNotify bool // M bit: ask for a Map-Notify
	AckNotify  bool // answer Map-Notify with Map-Notify-Ack (the site's NotifyAck)
	ProxyReply bool // P bit: the Map-Server answers Map-Requests for us
	// NoASN leaves the AS Number LCAF (Config.ASN) out of the records
	// registered here: OOR and lispers.net do not decode it.
	NoASN bool
}

// Registered reports when each Map-Server last confirmed a registration
// with an authenticated Map-Notify.
func (x *XTR) Registered() map[netip.AddrPort]time.Time {
	x.mu.Lock()
	defer x.mu.Unlock()
	m := make(map[netip.AddrPort]time.Time, len(x.registered))
	for k, v := range x.registered {
		m[k] = v
	}
	return m
}

// registerDue is the ETR's registration schedule, run by Tick: a round
// (one Map-Register per Map-Server) every RegisterFast for the first
// FastFor, then every RegisterEvery; at once when the Directory names
// other Map-Servers; sooner, backing off, while a wanted Map-Notify has
// not come. x.mu held.
func (x *XTR) registerDue(now time.Time) []lisp.Datagram {
	if len(x.cfg.Database) == 0 {
		return nil
	}
	var out []lisp.Datagram
	targets, key, missing := x.registerTargets()
	// Registered at the interval, and at once when the Directory
	// names other Map-Servers (a member joined, a name moved).
	every := x.cfg.RegisterEvery
	if now.Sub(x.started) < x.cfg.FastFor {
		every = x.cfg.RegisterFast
	}
	if now.Before(x.nextReg) && key == x.regTargets && x.unconfirmed() && !now.Before(x.lastReg.Add(x.retry)) {
		// A Map-Server that should have confirmed did not (the
		// message was lost, or it was not up yet when we started):
		// send again soon instead of at the next interval, backing off
		// from 1 s to the interval; the schedule itself stays.
		x.stats.RegisterRetries++
		x.retry = min(2*x.retry, every)
		out = append(out, x.registers(targets)...)
		x.lastReg = now
	}
	if !now.Before(x.nextReg) || key != x.regTargets {
		if x.retry == 0 || !x.unconfirmed() {
			x.retry = time.Second
		}
		out = append(out, x.registers(targets)...)
		x.lastReg = now
		x.regTargets = key
		if missing {
			// Some mapping had no Map-Server yet: soon again.
			x.stats.NoMapServer++
			every = min(every, time.Second)
		}
		x.nextReg = now.Add(every)
	}
	return out
}

// record is database mapping m as a mapping record, the EID in an AS
// Number LCAF when withASN and Config.ASN is set.
func (x *XTR) record(m Mapping, withASN bool) lisp.MappingRecord {
	eid := lisp.IPAddr(m.EID.Masked().Addr())
	if x.cfg.ASN != 0 && withASN {
		eid = lisp.ASNAddr(x.cfg.ASN, eid)
	}
	r := lisp.MappingRecord{TTL: x.cfg.RecordTTL, EIDMaskLen: uint8(m.EID.Bits()), Authoritative: true, EID: x.eidAddress(x.cfg.InstanceID, eid)}
	for _, l := range m.Locators {
		r.Locators = append(r.Locators, lisp.Locator{Priority: l.Priority, Weight: l.Weight, MPriority: 255, Local: true, Reachable: true, Address: lisp.IPAddr(l.Addr)})
	}
	return r
}

// repliesWithASN: the ETR's Map-Replies carry the AS Number LCAF unless a
// Map-Server is configured without it (the ITRs behind such a mapping
// system are then taken not to decode it either).
func (x *XTR) repliesWithASN() bool {
	for _, ms := range x.cfg.MapServers {
		if ms.NoASN {
			return false
		}
	}
	return true
}

// regTarget is one Map-Server and the database mappings registered with it.
type regTarget struct {
	ms   MapServer
	recs []lisp.MappingRecord
}

// unconfirmed reports whether a Map-Server of the last round that was asked
// for a Map-Notify has not sent an authenticated one since.
func (x *XTR) unconfirmed() bool {
	if x.lastReg.IsZero() {
		return false
	}
	for addr, ms := range x.servers {
		if ms.WantNotify && x.registered[addr].Before(x.lastReg) {
			return true
		}
	}
	return false
}

// registerTargets asks the Directory where each database mapping goes and
// groups the records by Map-Server (in database order; Map-Servers by
// address). key names the Map-Servers and what each gets; missing is set
// when some mapping had none.
func (x *XTR) registerTargets() (ts []*regTarget, key string, missing bool) {
	by := map[netip.AddrPort]*regTarget{}
	for _, m := range x.cfg.Database {
		servers := x.dir.MapServers(m)
		if len(servers) == 0 {
			missing = true
		}
		for _, ms := range servers {
			t := by[ms.Addr]
			if t == nil {
				t = &regTarget{ms: ms}
				by[ms.Addr] = t
				ts = append(ts, t)
			}
			t.recs = append(t.recs, x.record(m, !ms.NoASN))
		}
	}
	sort.Slice(ts, func(a, b int) bool { return ts[a].ms.Addr.Compare(ts[b].ms.Addr) < 0 })
	var kb []byte
	for _, t := range ts {
		kb = append(kb, t.ms.Addr.String()...)
		kb = append(kb, '=')
		kb = strconv.AppendInt(kb, int64(len(t.recs)), 10)
		kb = append(kb, ' ')
	}
	return ts, string(kb), missing
}

// registers builds one Map-Register per Map-Server with the database
// mappings registered there. The nonce grows with every message and starts
// from the clock, so it keeps growing across restarts (the Map-Server's
// replay check).
func (x *XTR) registers(targets []*regTarget) []lisp.Datagram {
	var out []lisp.Datagram
	clear(x.servers) // a Map-Server no longer named is no longer listened to
	for _, t := range targets {
		ms := t.ms
		x.servers[ms.Addr] = ms
		x.regNonce = max(x.regNonce+1, uint64(x.cfg.Now().UnixNano()))
		b, err := ms.Auth.Marshal(&lisp.MapRegister{WantMapNotify: ms.WantNotify, ProxyReply: ms.ProxyReply, Nonce: x.regNonce, Records: t.recs})
		if err != nil {
			x.stats.Malformed++
			continue
		}
		x.lastNonce[ms.Addr] = x.regNonce
		x.stats.Registers++
		out = append(out, lisp.Datagram{To: ms.Addr, Data: b})
	}
	return out
}

// notify checks a Map-Notify: from a Map-Server we registered with, its key,
// the nonce of our last Map-Register to it.
func (x *XTR) notify(m *lisp.MapNotify, pkt []byte, from netip.AddrPort, now time.Time) []lisp.Datagram {
	for _, ms := range x.servers {
		if ms.Addr.Addr().Unmap() != from.Addr().Unmap() {
			continue
		}
		if ms.Auth.Verify(pkt) != nil || m.Nonce != x.lastNonce[ms.Addr] {
			break
		}
		x.stats.Notifies++
		x.registered[ms.Addr] = now
		if !ms.AckNotify {
			return nil
		}
		ack := lisp.MapNotifyAck(*m)
		ack.AuthData = nil
		b, err := ms.Auth.Marshal(&ack)
		if err != nil {
			return nil
		}
		x.stats.NotifyAcks++
		return []lisp.Datagram{{To: from, Data: b}}
	}
	x.stats.NotifiesRefused++
	return nil
}

// answer is the ETR's Map-Reply to a Map-Request for one of its EIDs.
// Encapsulated requests come through a Map-Server: the reply goes to the
// ITR-RLOC of the family the request reached the Map-Server by (the outer
// source's: the ITR's control socket listens there — the inner source's
// family is the EID's, not necessarily one it listens on), else the first,
// at the inner source port. Plain requests are answered to their source.
func (x *XTR) answer(req *lisp.MapRequest, src, from netip.AddrPort, encapsulated bool) []lisp.Datagram {
	if len(req.Records) == 0 {
		x.stats.Malformed++
		return nil
	}
	iid, ip, ok := unwrapEID(req.Records[0].EID)
	if !ok || iid != x.cfg.InstanceID {
		x.stats.RequestsNotOurs++
		return nil
	}
	f := 0
	if ip.Is6() {
		f = 1
	}
	var rec *lisp.MappingRecord
	for _, i := range x.dbByFamily[f] {
		if x.cfg.Database[i].EID.Contains(ip) {
			r := x.record(x.cfg.Database[i], x.repliesWithASN())
			rec = &r
			break
		}
	}
	if rec == nil {
		x.stats.RequestsNotOurs++
		return nil
	}
	to := src
	if encapsulated {
		ip, ok := req.ITRRLOCFor(from.Addr())
		if !ok {
			x.stats.Malformed++
			return nil
		}
		to = netip.AddrPortFrom(ip, src.Port())
	}
	reply := &lisp.MapReply{Nonce: req.Nonce, Records: []lisp.MappingRecord{*rec}}
	if req.Probe && !encapsulated {
		// An RLOC-probe (RFC 9301 §7.1): the reply has the P bit, and p
		// on the locator probed — ours of the prober's family (OOR takes
		// p's locator, else the reply's source, as the one that is up).
		reply.Probe = true
		for i, l := range rec.Locators {
			for _, r := range x.cfg.RLOCs {
				if l.Address.IP == r && r.Is4() == src.Addr().Unmap().Is4() {
					rec.Locators[i].Probed = true
				}
			}
		}
	}
	b, err := lisp.Marshal(reply)
	if err != nil {
		x.stats.Malformed++
		return nil
	}
	x.stats.RequestsAnswered++
	return []lisp.Datagram{{To: to, Data: b}}
}
