package gen

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/psavd/psavd/internal/netlab"
)

// Counts are what a Sink has seen, by kind of frame.
type Counts struct {
	IPv4        uint64 // IPv4 without options
	IPv4Options uint64 // IPv4 with options (a PSAV tag is one)
	IPv6        uint64 // IPv6 not followed by Destination Options
	IPv6DestOpt uint64 // IPv6 followed by Destination Options (a PSAV tag is one)
	Other       uint64 // anything else (ARP, frames shorter than 34 octets, ...)
}

// Total is the number of frames of every kind.
func (c Counts) Total() uint64 {
	return c.IPv4 + c.IPv4Options + c.IPv6 + c.IPv6DestOpt + c.Other
}

// Sub returns c − o, field by field (o an earlier reading).
func (c Counts) Sub(o Counts) Counts {
	return Counts{c.IPv4 - o.IPv4, c.IPv4Options - o.IPv4Options, c.IPv6 - o.IPv6,
		c.IPv6DestOpt - o.IPv6DestOpt, c.Other - o.Other}
}

func (c Counts) String() string {
	return fmt.Sprintf("total %d (ipv4 %d, ipv4+opt %d, ipv6 %d, ipv6+dstopt %d, other %d)",
		c.Total(), c.IPv4, c.IPv4Options, c.IPv6, c.IPv6DestOpt, c.Other)
}

// Sink is an XDP program on one interface that counts every frame it receives
// (per-CPU counters, no atomics) and drops it: the cheapest possible receiver.
// Its bpf_link detaches when the Sink is closed or the process exits.
type Sink struct {
	counter *ebpf.Map
	prog    *ebpf.Program
	link    link.Link
}

// NewSink attaches a sink to interface iface in namespace ns ("" = the
// current namespace) in native (driver) mode.
func NewSink(ns, iface string) (*Sink, error) {
	counter, err := newCounterMap("psav_sink_cnt", numSlots)
	if err != nil {
		return nil, err
	}
	prog, err := newSinkProgram(counter)
	if err != nil {
		counter.Close()
		return nil, err
	}
	s := &Sink{counter: counter, prog: prog}
	if s.link, err = AttachXDP(ns, iface, prog); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Counts reads the counters (summed over CPUs).
func (s *Sink) Counts() (Counts, error) {
	var v [numSlots]uint64
	for i := range v {
		var percpu []uint64
		if err := s.counter.Lookup(uint32(i), &percpu); err != nil {
			return Counts{}, fmt.Errorf("gen: read sink counter: %w", err)
		}
		for _, x := range percpu {
			v[i] += x
		}
	}
	return Counts{v[slotIPv4], v[slotIPv4Options], v[slotIPv6], v[slotIPv6DestOpt], v[slotOther]}, nil
}

// Close detaches the program and frees the counters.
func (s *Sink) Close() error {
	var errs []error
	if s.link != nil {
		errs = append(errs, s.link.Close())
	}
	if s.prog != nil {
		errs = append(errs, s.prog.Close())
	}
	if s.counter != nil {
		errs = append(errs, s.counter.Close())
	}
	return errors.Join(errs...)
}

// AttachXDP attaches prog to interface iface of namespace ns ("" = current)
// in native mode through a bpf_link, which detaches by itself when closed or
// when the process dies — no program is left behind on a failed run.
func AttachXDP(ns, iface string, prog *ebpf.Program) (link.Link, error) {
	var l link.Link
	attach := func() error {
		ifc, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("gen: interface %s: %w", iface, err)
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifc.Index, Flags: link.XDPDriverMode})
		if err != nil {
			return fmt.Errorf("gen: attach XDP to %s: %w", iface, err)
		}
		return nil
	}
	var err error
	if ns == "" {
		err = attach()
	} else {
		err = netlab.Do(ns, attach)
	}
	return l, err
}

// Ifindex returns the index of interface iface in namespace ns ("" = current).
func Ifindex(ns, iface string) (int, error) {
	var idx int
	get := func() error {
		ifc, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("gen: interface %s: %w", iface, err)
		}
		idx = ifc.Index
		return nil
	}
	var err error
	if ns == "" {
		err = get()
	} else {
		err = netlab.Do(ns, get)
	}
	return idx, err
}

// Quiet turns IPv6 off in namespace ns for every interface created after the
// call, so that the kernel sends nothing of its own (neighbour discovery, MLD
// reports) on them: a sink then counts only the frames under test.
func Quiet(ns string) error {
	_, err := netlab.Exec(ns, "sysctl", "-qw",
		"net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	return err
}

// Supported reports why the generator and the sink cannot work here ("" when
// they can): it loads the sink's program, which needs root (or CAP_BPF and
// CAP_NET_ADMIN) and a kernel with BPF. Live frames need Linux 5.18.
func Supported() string {
	m, err := newCounterMap("psav_probe", numSlots)
	if err != nil {
		return err.Error()
	}
	defer m.Close()
	p, err := newSinkProgram(m)
	if err != nil {
		return err.Error()
	}
	p.Close()
	return ""
}
