package config

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/engine"
)

// Route is one [[route]] (routed forwarding).
type Route struct {
	Prefix netip.Prefix
	Port   int // index in Config.Ports of the port to leave by
	// NextHopMAC is the next hop's MAC (6 octets); when nil, the MAC of
	// NextHop is taken from the kernel's neighbour table at start.
	NextHopMAC net.HardwareAddr
	NextHop    netip.Addr // invalid when not given
}

func (c *Config) checkRoutes(k *checker, f *schema.File) {
	names := map[string]int{}
	for i, p := range f.Ports {
		if _, dup := names[p.Name]; !dup {
			names[p.Name] = i
		}
	}
	for i, r := range f.Routes {
		key := fmt.Sprintf("route[%d]", i)
		var tr Route
		tr.Prefix, _ = k.prefix(key+".prefix", r.Prefix)
		if j, ok := names[r.Port]; ok {
			tr.Port = j
		} else {
			k.add(key+".port", "no port is named %q", r.Port)
		}
		if r.NextHop != "" {
			tr.NextHop, _ = k.addr(key+".next_hop", r.NextHop)
		}
		if r.NextHopMAC != "" {
			// ParseMAC also takes EUI-64 and InfiniBand addresses; a next hop
			// on Ethernet has 6 octets.
			if m, err := net.ParseMAC(r.NextHopMAC); err != nil || len(m) != 6 {
				k.add(key+".next_hop_mac", "%q is not a MAC address", r.NextHopMAC)
			} else {
				tr.NextHopMAC = m
			}
		} else if r.NextHop == "" {
			k.add(key, "needs next_hop or next_hop_mac")
		}
		c.Routes = append(c.Routes, tr)
	}
	if c.Engine.Forwarding == engine.Routed && len(f.Routes) == 0 && len(f.Ports) > 0 {
		k.add("route", "routed forwarding needs at least one [[route]]")
	}
}
