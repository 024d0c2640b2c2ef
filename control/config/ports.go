package config

import (
	"fmt"

	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/ports/afxdp"
)

// Port is one [[port]].
type Port struct {
	Name      string
	Interface string
	Role      engine.Role
	// Peer is the index in Config.Ports of the port named by peer (-1 when
	// none: routed forwarding).
	Peer    int
	Queues  []int // nil: every RX queue the interface uses
	XDPMode afxdp.Mode
	Encap   engine.Encap
	MTU     int // IP MTU of the link, 1280 … 1906, default 1500
	// UDP6ZeroChecksum sends the outer IPv6 UDP checksum as zero.
	UDP6ZeroChecksum bool
	// XDPPrefilter drops, in the XDP program, what the engine would
	// certainly drop (ports/afxdp prefilter.go); egress ports only.
	XDPPrefilter bool
}

// Bounds of [[port]]: 1906 = ports.MaxFrame − the Ethernet header, what a
// frame buffer holds; MaxQueue is above any NIC's queue count.
const (
	MinMTU, MaxMTU = 1280, 1906
	MaxQueue       = 4095
)

// checkPorts checks [[port]]. xdp_mode, encap and mtu are defaulted per
// port: a key an element does not write takes the default; one it writes
// (even "" or 0) must be valid — toml.MetaData cannot tell the elements of
// an array of tables apart, so the plain document is asked (checker.setAt).
func (c *Config) checkPorts(k *checker, f *schema.File) {
	names := map[string]int{}
	ifq := map[string]string{}
	routed := c.Engine.Forwarding == engine.Routed
	for i, p := range f.Ports {
		key := fmt.Sprintf("port[%d]", i)
		tp := Port{Name: p.Name, Interface: p.Interface, Peer: -1, UDP6ZeroChecksum: p.UDP6ZeroChecksum, XDPPrefilter: p.XDPPrefilter == nil || *p.XDPPrefilter}
		if p.Name == "" {
			k.add(key+".name", "missing")
		} else if j, dup := names[p.Name]; dup {
			k.add(key+".name", "%q is already port[%d]", p.Name, j)
		} else {
			names[p.Name] = i
		}
		if p.Interface == "" {
			k.add(key+".interface", "missing")
		}
		if p.Role == "" {
			k.add(key+".role", "missing (ingress, egress or trust)")
		} else if k.oneOf(key+".role", p.Role, "ingress", "egress", "trust") {
			tp.Role, _ = engine.ParseRole(p.Role)
		}
		switch m := orDefault(k.setAt("port", i, "xdp_mode"), p.XDPMode, "auto"); m {
		case "auto":
			tp.XDPMode = afxdp.ModeAuto
		case "native":
			tp.XDPMode = afxdp.ModeNative
		case "generic":
			tp.XDPMode = afxdp.ModeGeneric
		default:
			k.oneOf(key+".xdp_mode", m, "auto", "native", "generic")
		}
		switch e := orDefault(k.setAt("port", i, "encap"), p.Encap, "none"); e {
		case "none":
			tp.Encap = engine.EncapNone
		case "lisp":
			tp.Encap = engine.EncapLISP
			if !routed {
				k.add(key+".encap", "lisp needs engine.forwarding = \"routed\" (the outer header needs a next hop)")
			}
			if f.LISP == nil || len(f.LISP.RLOCs) == 0 {
				k.add(key+".encap", "lisp needs [lisp] rlocs (the outer source addresses)")
			}
		default:
			k.oneOf(key+".encap", e, "none", "lisp")
		}
		tp.MTU = orDefault(k.setAt("port", i, "mtu"), p.MTU, 1500)
		between(k, key+".mtu", tp.MTU, MinMTU, MaxMTU)
		for j, q := range p.Queues {
			qk := fmt.Sprintf("%s.queues[%d]", key, j)
			if q < 0 {
				k.add(qk, "must not be negative")
				continue
			}
			if q > MaxQueue {
				k.add(qk, "must be at most %d, is %d", MaxQueue, q)
				continue
			}
			id := fmt.Sprintf("%s/%d", p.Interface, q)
			if other, dup := ifq[id]; dup {
				k.add(qk, "interface %s queue %d is already used by %s", p.Interface, q, other)
			}
			ifq[id] = key
			tp.Queues = append(tp.Queues, q)
		}
		if k.setAt("port", i, "queues") && len(p.Queues) == 0 {
			k.add(key+".queues", "empty: leave the key out to open every RX queue")
		}
		c.Ports = append(c.Ports, tp)
	}
	// A node without ports runs only control-plane roles: an ACS, a DoT
	// server, a Map-Server, a LISP-Decent member, or an ETR registering
	// EIDs on behalf of a data plane elsewhere.
	lispRole := f.LISP != nil && (f.LISP.MapServer != nil || len(f.LISP.Database) > 0 || f.LISP.Decent != nil)
	if len(f.Ports) == 0 && f.ACS == nil && (f.ADoT == nil || f.ADoT.Server == nil) && !lispRole {
		k.add("port", "no ports: at least two are needed to forward (only an ACS, DoT-server, Map-Server, LISP-Decent or ETR node has none)")
	}
	for i, p := range f.Ports {
		if j, ok := names[p.Peer]; ok {
			c.Ports[i].Peer = j
		}
		if routed {
			continue
		}
		key := fmt.Sprintf("port[%d].peer", i)
		switch j, ok := names[p.Peer]; {
		case p.Peer == "":
			k.add(key, "missing (cross-connect forwarding needs a peer port)")
		case !ok:
			k.add(key, "no port is named %q", p.Peer)
		case p.Peer == p.Name:
			k.add(key, "a port cannot be its own peer")
		case f.Ports[j].Peer != p.Name:
			k.add(key, "%q's peer is %q, not %q: cross-connect peers must name each other", p.Peer, f.Ports[j].Peer, p.Name)
		}
	}
}
