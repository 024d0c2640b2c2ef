package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/testpki"
)

// Env is a built topology: its namespaces and links, the per-run PSAV seed,
// and the ABR nodes once started. Close tears all of it down.
type Env struct {
	Topo *Topology
	Net  *netlab.Topology
	// Run is the run's random tag: part of every namespace name and of every
	// payload marker, so concurrent runs never see each other's packets.
	Run string
	// S0 (64 hex digits) seeds every static peer of every ABR; StartEpoch is
	// the epoch it belongs to (the current epoch − 1 when built).
	S0         string
	StartEpoch int64
	// Dir holds the generated engine.toml files.
	Dir string

	// ACS mode (acs.go): the run's CA and community key, made on first use.
	ca          *testpki.CA
	communities map[uint32]membership.Signer // endorsement key per ASCN
	dotPKI      *testpki.ServerPKI           // [lab] dot_name: made on first use

	log io.Writer

	mu   sync.Mutex
	abrs map[string]*node
}

// Build creates the namespaces, links, addresses, routes and settings of t.
// On error everything created so far is removed again. log receives a line
// per step (io.Discard to keep quiet).
func Build(ctx context.Context, t *Topology, log io.Writer) (env *Env, err error) {
	if why := netlab.Supported(); why != "" {
		return nil, errors.New("lab: " + why)
	}
	if log == nil {
		log = io.Discard
	}
	var s0 [32]byte
	if _, err := rand.Read(s0[:]); err != nil {
		return nil, err
	}
	n := netlab.New()
	e := &Env{
		Topo:       t,
		Net:        n,
		Run:        n.Tag,
		S0:         hex.EncodeToString(s0[:]),
		StartEpoch: t.Epoch(time.Now()) - 1,
		log:        log,
		abrs:       map[string]*node{},
	}
	defer func() {
		if err != nil {
			_ = e.Close()
			env = nil
		}
	}()
	if e.Dir, err = os.MkdirTemp("", "psavd-lab-"+e.Run+"-"); err != nil {
		return nil, err
	}
	for _, nd := range t.Nodes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ns, err := n.NS(nd.Name)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "namespace %s\n", ns)
		// No duplicate address detection, for the link-local addresses the
		// kernel makes too (nodad covers only the configured ones): while
		// an interface's link-local address is tentative, the first IPv6
		// packets wait a second for neighbour discovery.
		if err := sysctl(ns, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
			return nil, err
		}
		if nd.Forwarding {
			// A router: forward both families, and no reverse-path filter,
			// so that forged sources reach the ABR that must catch them
			// instead of being dropped early by the router's kernel.
			if err := sysctl(ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
				"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"); err != nil {
				return nil, err
			}
		}
	}
	for _, l := range t.Links {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := e.link(l); err != nil {
			return nil, err
		}
	}
	for _, nd := range t.Nodes {
		for _, r := range nd.Routes {
			args := []string{"-n", e.NS(nd.Name)}
			if strings.Contains(r, ":") {
				args = append(args, "-6")
			}
			args = append(args, "route", "add")
			if err := netlab.IP(append(args, strings.Fields(r)...)...); err != nil {
				return nil, err
			}
		}
	}
	return e, nil
}

// link creates one veth pair and configures both ends.
func (e *Env) link(l Link) error {
	nsA, nsB := e.NS(l.A.Node), e.NS(l.B.Node)
	if err := e.Net.Veth(nsA, l.A.Interface, l.A.MAC, nsB, l.B.Interface, l.B.MAC); err != nil {
		return err
	}
	fmt.Fprintf(e.log, "link %s/%s — %s/%s\n", l.A.Node, l.A.Interface, l.B.Node, l.B.Interface)
	for _, end := range []End{l.A, l.B} {
		ns := e.NS(end.Node)
		if l.MTU > 0 {
			if err := netlab.IP("-n", ns, "link", "set", end.Interface, "mtu", fmt.Sprint(l.MTU)); err != nil {
				return err
			}
		}
		if nd := e.Topo.Node(end.Node); nd.ABR != nil && nd.ABR.isPort(end.Interface) && !nd.ABR.routed() {
			// A bump in the wire has no addresses on its ports; its own
			// kernel must not talk on them either (router solicitations,
			// MLD reports), or the ABR's counters would show traffic nobody
			// sent. (Other interfaces of an ABR node, e.g. an ACS's
			// management link, and the ports of a routed ABR, which are
			// the kernel's interfaces too, are configured like any host's.)
			if err := sysctl(ns, "net.ipv6.conf."+end.Interface+".disable_ipv6=1"); err != nil {
				return err
			}
			continue
		}
		if e.Topo.Node(end.Node).Forwarding {
			if err := sysctl(ns, "net.ipv4.conf."+end.Interface+".rp_filter=0"); err != nil {
				return err
			}
		}
		// Packets of the kernel's own sockets leave a veth with the
		// checksum left for the "hardware" (CHECKSUM_PARTIAL). An ABR's
		// AF_XDP copy loses that state, so the receiver would see a wrong
		// checksum and drop the packet: have the sender compute it.
		if _, err := netlab.Exec(ns, "ethtool", "-K", end.Interface, "tx", "off"); err != nil {
			return err
		}
		for _, a := range end.Addresses {
			args := []string{"-n", ns, "addr", "add", a, "dev", end.Interface}
			if strings.Contains(a, ":") {
				// No duplicate address detection: the address is usable at
				// once, and no DAD probes cross the ABRs.
				args = append(args, "nodad")
			}
			if err := netlab.IP(args...); err != nil {
				return err
			}
		}
	}
	return nil
}

func sysctl(ns string, settings ...string) error {
	_, err := netlab.Exec(ns, "sysctl", append([]string{"-q", "-w"}, settings...)...)
	return err
}

// NS returns the namespace name of node.
func (e *Env) NS(node string) string { return "psv" + e.Run + "-" + node }

// Epoch returns the PSAV epoch number at time t: floor((unix − t0) / P).
func (t *Topology) Epoch(at time.Time) int64 {
	d := at.Unix() - t.PSAV.T0
	p := t.PSAV.EpochSeconds
	if d < 0 {
		return (d - p + 1) / p
	}
	return d / p
}

// MAC returns the hardware address of interface iface of node.
func (e *Env) MAC(node, iface string) (net.HardwareAddr, error) {
	var mac net.HardwareAddr
	err := netlab.Do(e.NS(node), func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		mac = ifi.HardwareAddr
		return nil
	})
	return mac, err
}

// NextHop returns how node reaches dst according to its own routing table:
// the outgoing interface and the MAC address of the next hop (the gateway,
// or dst itself when it is on link). Forged frames are addressed with it.
func (e *Env) NextHop(node string, dst netip.Addr) (iface string, mac net.HardwareAddr, err error) {
	out, err := netlab.Run("ip", "-n", e.NS(node), "route", "get", dst.String())
	if err != nil {
		return "", nil, err
	}
	hop := dst
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "via":
			if hop, err = netip.ParseAddr(f[i+1]); err != nil {
				return "", nil, fmt.Errorf("route get %s: via %q", dst, f[i+1])
			}
		case "dev":
			iface = f[i+1]
		}
	}
	if iface == "" {
		return "", nil, fmt.Errorf("%s has no route to %s: %q", node, dst, out)
	}
	// The next hop's MAC is read from its own namespace rather than from
	// the neighbour table, which may not be resolved yet.
	owner, ok := e.Topo.Owner(hop)
	if !ok {
		return "", nil, fmt.Errorf("no node holds %s, the next hop from %s to %s", hop, node, dst)
	}
	mac, err = e.MAC(owner.Node, owner.Interface)
	return iface, mac, err
}

// Close stops the ABR nodes, deletes the namespaces (and with them every
// veth and XDP program of the run) and the generated configuration.
func (e *Env) Close() error {
	err := e.StopABRs()
	if cerr := e.Net.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if e.Dir != "" {
		os.RemoveAll(e.Dir)
	}
	return err
}

// Leftovers lists the namespaces of this run that still exist (none after
// Close): the lab's proof that it cleaned up.
func (e *Env) Leftovers() []string {
	out, err := netlab.Run("ip", "netns", "list")
	if err != nil {
		return []string{err.Error()}
	}
	var left []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "psv"+e.Run+"-") {
			left = append(left, f[0])
		}
	}
	return left
}
