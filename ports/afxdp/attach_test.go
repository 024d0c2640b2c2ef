package afxdp

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/ports"
)

// attachedID returns the id of the XDP program attached to ifname in ns
// (0: none), as netlink reports it.
func attachedID(t *testing.T, ns, ifname string) uint32 {
	t.Helper()
	var id uint32
	err := netlab.Do(ns, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			id = x.ProgId
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// attachNetlink loads prog in ns and attaches it to ifname through netlink
// (not a bpf_link) with flags, then closes the program's fd: the program
// stays attached, as one left behind by a crashed process would.
func attachNetlink(t *testing.T, ns, ifname string, spec *ebpf.CollectionSpec, name string, flags int) uint32 {
	t.Helper()
	err := netlab.Do(ns, func() error {
		coll, err := ebpf.NewCollection(spec)
		if err != nil {
			return err
		}
		defer coll.Close()
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		return netlink.LinkSetXdpFdWithFlags(l, coll.Programs[name].FD(), flags)
	})
	if err != nil {
		t.Fatal(err)
	}
	id := attachedID(t, ns, ifname)
	if id == 0 {
		t.Fatal("netlink attach left no program")
	}
	return id
}

// TestCloseDetaches checks the attach modes on a veth and that Close leaves
// no XDP program behind.
func TestCloseDetaches(t *testing.T) {
	requireAFXDP(t)
	for _, c := range []struct {
		mode Mode
		want string
		ip   string // what `ip -d link` calls the attachment
	}{
		{ModeAuto, "native", "xdp "},
		{ModeNative, "native", "xdp "},
		{ModeGeneric, "generic", "xdpgeneric"},
	} {
		t.Run(c.mode.String(), func(t *testing.T) {
			p := newPair(t, false)
			iface, port := openIn(t, p.nsB, p.ifB, Options{Mode: c.mode, Frames: 64, RingSize: 32})
			if iface.Mode() != c.want {
				t.Errorf("mode %s attached %s, want %s", c.mode, iface.Mode(), c.want)
			}
			if q := iface.Queues(); q != 1 {
				t.Errorf("veth reports %d RX queues, want 1", q)
			}
			out := xdpShow(t, p.nsB, p.ifB)
			if !hasXDP(out) || !strings.Contains(out, ProgramName) || !strings.Contains(out, c.ip) {
				t.Fatalf("after OpenInterface, ip -d link show:\n%s", out)
			}
			if err := iface.Close(); err != nil {
				t.Fatal(err)
			}
			if err := iface.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if err := port.Close(); err != nil {
				t.Errorf("port Close after interface Close: %v", err)
			}
			if out := xdpShow(t, p.nsB, p.ifB); hasXDP(out) {
				t.Errorf("XDP program still attached after Close:\n%s", out)
			}
			if _, err := port.Receive(ports.NewBatch(1), 0); !errors.Is(err, ErrClosed) {
				t.Errorf("Receive after Close: %v", err)
			}
			if _, err := iface.OpenQueue("x", 0); !errors.Is(err, ErrClosed) {
				t.Errorf("OpenQueue after Close: %v", err)
			}
		})
	}
}

// TestStaleProgramRemoved leaves a psavd program attached through netlink
// (in SKB and in driver mode) and checks that OpenInterface replaces it.
func TestStaleProgramRemoved(t *testing.T) {
	requireAFXDP(t)
	for _, c := range []struct {
		name  string
		flags int
	}{{"skb", unix.XDP_FLAGS_SKB_MODE}, {"drv", unix.XDP_FLAGS_DRV_MODE}} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t, false)
			stale := attachNetlink(t, p.nsB, p.ifB, collectionSpec(1), ProgramName, c.flags)
			t.Logf("stale program id %d:\n%s", stale, xdpShow(t, p.nsB, p.ifB))
			iface, _ := openIn(t, p.nsB, p.ifB, Options{Frames: 64, RingSize: 32})
			info, err := iface.prog.Info()
			if err != nil {
				t.Fatal(err)
			}
			ours, _ := info.ID()
			if now := attachedID(t, p.nsB, p.ifB); now != uint32(ours) || now == stale {
				t.Errorf("attached program id %d, want ours %d (stale was %d)", now, ours, stale)
			}
			if err := iface.Close(); err != nil {
				t.Fatal(err)
			}
			if out := xdpShow(t, p.nsB, p.ifB); hasXDP(out) {
				t.Errorf("XDP program still attached after Close:\n%s", out)
			}
		})
	}
}

// TestForeignProgramKept checks that OpenInterface refuses an interface
// where another XDP program is attached, names it and leaves it alone.
func TestForeignProgramKept(t *testing.T) {
	requireAFXDP(t)
	p := newPair(t, false)
	spec := &ebpf.CollectionSpec{Programs: map[string]*ebpf.ProgramSpec{
		"foreign_xdp": {
			Name:         "foreign_xdp",
			Type:         ebpf.XDP,
			License:      "MIT",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
		},
	}}
	id := attachNetlink(t, p.nsB, p.ifB, spec, "foreign_xdp", unix.XDP_FLAGS_SKB_MODE)
	err := netlab.Do(p.nsB, func() error {
		iface, err := OpenInterface(p.ifB, Options{})
		if err == nil {
			iface.Close()
		}
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "foreign_xdp") {
		t.Fatalf("OpenInterface with a foreign program attached: %v, want an error naming foreign_xdp", err)
	}
	t.Logf("error: %v", err)
	if now := attachedID(t, p.nsB, p.ifB); now != id {
		t.Errorf("foreign program id %d replaced by %d", id, now)
	}
}

// TestOpenQueueErrors checks the refusals of OpenQueue and OpenInterface.
func TestOpenQueueErrors(t *testing.T) {
	requireAFXDP(t)
	p := newPair(t, false)
	iface, _ := openIn(t, p.nsB, p.ifB, Options{Frames: 64, RingSize: 32})
	err := netlab.Do(p.nsB, func() error {
		if _, err := iface.OpenQueue("dup", 0); err == nil {
			return errors.New("second socket on queue 0 accepted")
		}
		if _, err := iface.OpenQueue("neg", -1); err == nil {
			return errors.New("queue -1 accepted")
		}
		if _, err := OpenInterface("nonexistent0", Options{}); err == nil {
			return errors.New("missing interface accepted")
		}
		// Our own program, attached through a live bpf_link, is not stale.
		if i2, err := OpenInterface(p.ifB, Options{}); err == nil {
			i2.Close()
			return errors.New("second OpenInterface on an attached interface accepted")
		} else if !strings.Contains(err.Error(), "bpf_link") {
			return fmt.Errorf("second OpenInterface: %v", err)
		}
		if _, err := OpenInterface(p.ifB, Options{RingSize: 100}); err == nil {
			return errors.New("ring size 100 accepted")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
