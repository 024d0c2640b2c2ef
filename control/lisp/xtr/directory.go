package xtr

import (
	"net/netip"
	"sync/atomic"
)

// Directory says where the ETR registers and where the ITR asks. Static
// configuration (Static) and LISP-Decent (control/decent/push and
// control/decent/pull, wired in cmd/psavd) implement it, so the xTR has one
// code path for both. Its
// methods are called from Tick with the xTR's lock held: they must not
// block (a directory that resolves names does so in the background and
// answers from what it has).
type Directory interface {
	// MapServers returns the Map-Servers mapping m is registered with;
	// none (yet) → it is registered as soon as there are some.
	MapServers(m Mapping) []MapServer
	// MapResolver returns where the next Map-Request for eid (in
	// instance iid) goes; false when none is known (yet): the attempt
	// counts as a try, and the request is sent at its next try.
	MapResolver(iid uint32, eid netip.Addr) (netip.AddrPort, bool)
}

// Static is the Directory of static configuration: every mapping is
// registered with every MapServer, Map-Requests go round robin over the
// Resolvers.
type Static struct {
	Servers   []MapServer
	Resolvers []netip.AddrPort
	next      atomic.Uint64
}

// MapServers returns every configured Map-Server.
func (s *Static) MapServers(Mapping) []MapServer { return s.Servers }

// MapResolver returns the next resolver, round robin.
func (s *Static) MapResolver(uint32, netip.Addr) (netip.AddrPort, bool) {
	if len(s.Resolvers) == 0 {
		return netip.AddrPort{}, false
	}
	return s.Resolvers[(s.next.Add(1)-1)%uint64(len(s.Resolvers))], true
}
