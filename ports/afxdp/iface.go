package afxdp

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Mode selects how the XDP program is attached.
type Mode int

const (
	// ModeAuto attaches in native (driver) mode and falls back to generic
	// (SKB) mode when the driver refuses.
	ModeAuto Mode = iota
	// ModeNative attaches in native (driver) mode only.
	ModeNative
	// ModeGeneric attaches in generic (SKB) mode only.
	ModeGeneric
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Defaults of Options.
const (
	DefaultFrames    = 4096
	DefaultRingSize  = 2048
	DefaultFrameSize = 2048
)

// Options configure an interface and the sockets opened on it.
type Options struct {
	// Mode is how the XDP program is attached (default ModeAuto).
	Mode Mode
	// Frames is the number of UMEM frames per socket (default 4096): the
	// first half is the RX pool (kept on the fill ring), the second half
	// the TX pool. At least 16, even.
	Frames int
	// RingSize is the size of the rx, tx, fill and completion rings
	// (default 2048, a power of two, at least 8).
	RingSize int
	// FrameSize is the UMEM frame size, 2048 (default) or 4096. The kernel
	// places received data 256 bytes into a frame (XDP_PACKET_HEADROOM), so
	// the largest frame a port can receive is FrameSize-256 bytes.
	FrameSize int
	// CrossConnect makes the program forward non-IP frames (ARP, NDP not
	// for this node, other EtherTypes) through the socket: the behaviour
	// of a bump-in-the-wire port. Routed ports leave them to the kernel.
	CrossConnect bool
	// FailOpen hands IP data to the kernel while no socket is open on its
	// queue. The default (false) is fail-closed: such data is dropped, so
	// that nothing bypasses psavd's checks.
	FailOpen bool
	// BusyPoll, when positive, makes the poll loop drive the device's
	// receive (its NAPI context) itself instead of waiting for the
	// kernel's softirq: every socket gets SO_PREFER_BUSY_POLL,
	// SO_BUSY_POLL = BusyPoll (rounded up to µs, at most 1 s) and
	// SO_BUSY_POLL_BUDGET = BusyPollBudget, and a Receive that finds the RX
	// ring empty calls recvfrom once, which busy-polls, before it sleeps.
	// For NICs with interrupt deferral set (napi_defer_hard_irqs,
	// gro_flush_timeout); on a veth it moves the receive work of the
	// interface onto the poll loop's CPU (docs/perf.md).
	BusyPoll time.Duration
	// BusyPollBudget is the packets one busy poll may process (default 64;
	// 1 … 65535). Only with BusyPoll.
	BusyPollBudget int
}

func (o Options) withDefaults() (Options, error) {
	if o.Frames == 0 {
		o.Frames = DefaultFrames
	}
	if o.RingSize == 0 {
		o.RingSize = DefaultRingSize
	}
	if o.FrameSize == 0 {
		o.FrameSize = DefaultFrameSize
	}
	switch {
	case o.Mode < ModeAuto || o.Mode > ModeGeneric:
		return o, fmt.Errorf("afxdp: invalid mode %d", int(o.Mode))
	case o.Frames < 16 || o.Frames%2 != 0 || o.Frames > 1<<20:
		return o, fmt.Errorf("afxdp: Frames %d: want an even number in [16, 1048576]", o.Frames)
	case o.RingSize < 8 || bits.OnesCount(uint(o.RingSize)) != 1 || o.RingSize > 1<<16:
		return o, fmt.Errorf("afxdp: RingSize %d: want a power of two in [8, 65536]", o.RingSize)
	case o.FrameSize != 2048 && o.FrameSize != 4096:
		return o, fmt.Errorf("afxdp: FrameSize %d: want 2048 or 4096", o.FrameSize)
	case o.BusyPoll < 0 || o.BusyPoll > time.Second:
		return o, fmt.Errorf("afxdp: BusyPoll %v: want 0 … 1s", o.BusyPoll)
	case o.BusyPollBudget < 0 || o.BusyPollBudget > 65535:
		return o, fmt.Errorf("afxdp: BusyPollBudget %d: want 1 … 65535", o.BusyPollBudget)
	}
	if o.BusyPoll > 0 && o.BusyPollBudget == 0 {
		o.BusyPollBudget = 64
	}
	return o, nil
}

func (o Options) configFlags() uint32 {
	var f uint32
	if o.CrossConnect {
		f |= cfgCrossConnect
	}
	if !o.FailOpen {
		f |= cfgFailClosed
	}
	return f
}

// Interface is one network interface with psavd's XDP program attached. Its
// queues are opened as Ports with OpenQueue.
//
// OpenInterface, OpenQueue and RefreshLocalAddrs must run in the network
// namespace of the interface (interface indexes, netlink and the binding of
// AF_XDP sockets are per namespace); the other methods may run anywhere.
type Interface struct {
	name    string
	ifindex int
	opts    Options
	nl      *netlink.Handle // opened in the interface's namespace

	coll   *ebpf.Collection
	prog   *ebpf.Program
	xsks   *ebpf.Map
	locals *ebpf.Map
	config *ebpf.Map
	pf     *Prefilter
	link   link.Link
	mode   string
	queues int

	mu     sync.Mutex // ports, closed, local address updates
	ports  map[int]*Port
	closed bool
}

var memlockOnce sync.Once

// raiseMemlock lifts RLIMIT_MEMLOCK once per process: for BPF maps on
// kernels without memcg accounting (cilium's RemoveMemlock), and for the
// UMEM, which XDP_UMEM_REG still charges against RLIMIT_MEMLOCK on every
// kernel (unless the process has CAP_IPC_LOCK). Both are best effort.
func raiseMemlock() {
	memlockOnce.Do(func() {
		_ = rlimit.RemoveMemlock()
		lim := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
		_ = unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &lim, nil)
	})
}

var (
	supportedOnce   sync.Once
	supportedReason string
)

// Supported returns "" when AF_XDP sockets and XDP programs can be used in
// this process, else the reason (tests skip with it). It checks for root,
// creates an AF_XDP socket and loads a trivial XDP program.
func Supported() string {
	supportedOnce.Do(func() { supportedReason = probeSupport() })
	return supportedReason
}

func probeSupport() string {
	if os.Geteuid() != 0 {
		return "AF_XDP needs root (CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF)"
	}
	raiseMemlock()
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Sprintf("AF_XDP sockets unavailable: %v", err)
	}
	unix.Close(fd)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:    "psavd_probe",
		Type:    ebpf.XDP,
		License: "Dual MIT/GPL",
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, xdpPass),
			asm.Return(),
		},
	})
	if err != nil {
		return fmt.Sprintf("cannot load XDP programs: %v", err)
	}
	prog.Close()
	return ""
}

// OpenInterface loads psavd's XDP program and its maps, fills the local
// address map from the interface's addresses, and attaches the program to
// ifname (native first, then generic, as opts.Mode allows). A stale psavd
// program attached through netlink (left by a crashed older run) is removed
// first; any other program already attached is an error naming it. The
// program is attached through a bpf_link, so it detaches by itself if the
// process dies. Until a queue is opened, IP data arriving on it is dropped
// (or passed to the kernel with opts.FailOpen).
func OpenInterface(ifname string, opts Options) (*Interface, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	raiseMemlock()
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("afxdp: netlink: %w", err)
	}
	l, err := h.LinkByName(ifname)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("afxdp: interface %s: %w", ifname, err)
	}
	if err := removeStale(l); err != nil {
		h.Close()
		return nil, err
	}
	attrs := l.Attrs()
	nq := max(attrs.NumRxQueues, attrs.NumTxQueues, 1)
	coll, err := ebpf.NewCollection(collectionSpec(nq))
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("afxdp: load XDP program: %w", err)
	}
	i := &Interface{
		name:    ifname,
		ifindex: attrs.Index,
		opts:    opts,
		nl:      h,
		coll:    coll,
		prog:    coll.Programs[ProgramName],
		xsks:    coll.Maps[mapXSKs],
		locals:  coll.Maps[mapLocals],
		config:  coll.Maps[mapConfig],
		pf:      newPrefilter(coll, opts.configFlags()),
		ports:   make(map[int]*Port),
		queues:  rxQueues(ifname),
	}
	fail := func(err error) (*Interface, error) {
		i.coll.Close()
		i.nl.Close()
		return nil, err
	}
	if err := i.config.Put(uint32(0), opts.configFlags()); err != nil {
		return fail(fmt.Errorf("afxdp: %s: write config: %w", ifname, err))
	}
	// Local addresses before attaching, so that the node's own traffic is
	// never taken away from the kernel.
	if err := i.refreshLocalAddrs(l); err != nil {
		return fail(err)
	}
	if err := i.attach(); err != nil {
		return fail(err)
	}
	return i, nil
}

// attach links the program to the interface in the first mode that works.
func (i *Interface) attach() error {
	type try struct {
		flags link.XDPAttachFlags
		name  string
	}
	var tries []try
	switch i.opts.Mode {
	case ModeAuto:
		tries = []try{{link.XDPDriverMode, "native"}, {link.XDPGenericMode, "generic"}}
	case ModeNative:
		tries = []try{{link.XDPDriverMode, "native"}}
	case ModeGeneric:
		tries = []try{{link.XDPGenericMode, "generic"}}
	}
	var errs []error
	for _, t := range tries {
		l, err := link.AttachXDP(link.XDPOptions{Program: i.prog, Interface: i.ifindex, Flags: t.flags})
		if err == nil {
			i.link = l
			i.mode = t.name
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.name, err))
	}
	return fmt.Errorf("afxdp: %s: attach XDP program: %w", i.name, errors.Join(errs...))
}

// removeStale detaches a psavd program left attached through netlink (the
// way older tools attach). It never calls asavie's Program.Detach, which
// loops forever in SKB mode. A program attached through a bpf_link cannot
// be removed this way: that means another process holds the interface.
func removeStale(l netlink.Link) error {
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return nil
	}
	name := l.Attrs().Name
	var flags int
	switch x.AttachMode {
	case nl.XDP_ATTACHED_DRV:
		flags = unix.XDP_FLAGS_DRV_MODE
	case nl.XDP_ATTACHED_SKB:
		flags = unix.XDP_FLAGS_SKB_MODE
	case nl.XDP_ATTACHED_HW:
		flags = unix.XDP_FLAGS_HW_MODE
	default:
		return fmt.Errorf("afxdp: %s: several XDP programs attached (mode %d); remove them first", name, x.AttachMode)
	}
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId))
	if err != nil {
		return fmt.Errorf("afxdp: %s: XDP program id %d already attached: %w", name, x.ProgId, err)
	}
	info, err := prog.Info()
	prog.Close()
	if err != nil {
		return fmt.Errorf("afxdp: %s: XDP program id %d already attached: %w", name, x.ProgId, err)
	}
	if info.Name != ProgramName {
		return fmt.Errorf("afxdp: %s: a foreign XDP program %s is attached; not removing it", name, programDescription(info))
	}
	if err := netlink.LinkSetXdpFdWithFlags(l, -1, flags); err != nil {
		return fmt.Errorf("afxdp: %s: remove stale %s: %w (attached through a bpf_link: is another psavd running on it?)", name, programDescription(info), err)
	}
	return nil
}

// Prefilter returns the interface's XDP pre-filter (off until configured).
func (i *Interface) Prefilter() *Prefilter { return i.pf }

// Name returns the interface name.
func (i *Interface) Name() string { return i.name }

// Index returns the interface index (in the interface's namespace).
func (i *Interface) Index() int { return i.ifindex }

// Mode returns how the program is attached: "native" or "generic".
func (i *Interface) Mode() string { return i.mode }

// Queues returns the number of RX queues the interface uses (ethtool
// channels rx + combined, read at OpenInterface; 1 when the driver does not
// say). Open a port on every one of them: IP data arriving on a queue
// without a socket is dropped (or passed, with FailOpen).
func (i *Interface) Queues() int { return i.queues }

// ethtoolChannels is struct ethtool_channels.
type ethtoolChannels struct {
	Cmd, MaxRx, MaxTx, MaxOther, MaxCombined, Rx, Tx, Other, Combined uint32
}

// rxQueues asks the driver (ETHTOOL_GCHANNELS) how many RX queues ifname
// uses; 1 when it cannot tell.
func rxQueues(ifname string) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 1
	}
	defer unix.Close(fd)
	ch := &ethtoolChannels{Cmd: unix.ETHTOOL_GCHANNELS} // on the heap: its address goes to the kernel
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data uintptr
		_    [16]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = uintptr(unsafe.Pointer(ch))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(ch)
	if errno != 0 || ch.Rx+ch.Combined == 0 {
		return 1
	}
	return int(ch.Rx + ch.Combined)
}

// SetLocalAddrs replaces the set of the node's own addresses on this
// interface: IP traffic to them (except UDP to the LISP data port), ARP for
// them and Neighbor Solicitations for them go to the kernel. New addresses
// are added before old ones are removed, so an address kept in both sets is
// never missing.
func (i *Interface) SetLocalAddrs(addrs []netip.Addr) error {
	want := make(map[[16]byte]struct{}, len(addrs))
	for _, a := range addrs {
		if !a.IsValid() {
			return fmt.Errorf("afxdp: %s: invalid local address", i.name)
		}
		want[a.Unmap().As16()] = struct{}{}
	}
	if len(want) > maxLocalAddrs {
		return fmt.Errorf("afxdp: %s: %d local addresses, at most %d", i.name, len(want), maxLocalAddrs)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return fmt.Errorf("afxdp: %s: %w", i.name, ErrClosed)
	}
	for k := range want {
		if err := i.locals.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("afxdp: %s: add local address %s: %w", i.name, netip.AddrFrom16(k).Unmap(), err)
		}
	}
	var stale [][16]byte
	var k [16]byte
	var v uint8
	it := i.locals.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("afxdp: %s: list local addresses: %w", i.name, err)
	}
	for _, k := range stale {
		if err := i.locals.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("afxdp: %s: remove local address %s: %w", i.name, netip.AddrFrom16(k).Unmap(), err)
		}
	}
	return nil
}

// LocalAddrs returns the addresses currently in the local-address map.
func (i *Interface) LocalAddrs() ([]netip.Addr, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return nil, fmt.Errorf("afxdp: %s: %w", i.name, ErrClosed)
	}
	var out []netip.Addr
	var k [16]byte
	var v uint8
	it := i.locals.Iterate()
	for it.Next(&k, &v) {
		out = append(out, netip.AddrFrom16(k).Unmap())
	}
	return out, it.Err()
}

// RefreshLocalAddrs re-reads the interface's addresses from netlink (in the
// namespace OpenInterface ran in) and installs them with SetLocalAddrs.
// OpenInterface does it once; call it again when addresses change.
func (i *Interface) RefreshLocalAddrs() error {
	l, err := i.nl.LinkByIndex(i.ifindex)
	if err != nil {
		return fmt.Errorf("afxdp: %s: %w", i.name, err)
	}
	return i.refreshLocalAddrs(l)
}

func (i *Interface) refreshLocalAddrs(l netlink.Link) error {
	list, err := i.nl.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("afxdp: %s: list addresses: %w", i.name, err)
	}
	addrs := make([]netip.Addr, 0, len(list))
	for _, a := range list {
		if a.IPNet == nil {
			continue
		}
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			addrs = append(addrs, ip.Unmap())
		}
	}
	return i.SetLocalAddrs(addrs)
}

// OpenQueue opens an AF_XDP socket on one queue of the interface and
// registers it with the program. There is one socket per (interface,
// queue). Because asavie's Socket.Close does not unmap the rings, a closed
// socket stays bound in the kernel for the life of the process: opening the
// same (interface, queue) again in one process fails with EBUSY.
func (i *Interface) OpenQueue(portName string, queue int) (*Port, error) {
	if queue < 0 {
		return nil, fmt.Errorf("afxdp: %s: invalid queue %d", i.name, queue)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return nil, fmt.Errorf("afxdp: %s: %w", i.name, ErrClosed)
	}
	if uint32(queue) >= i.xsks.MaxEntries() {
		return nil, fmt.Errorf("afxdp: %s: queue %d beyond the socket map (%d entries)", i.name, queue, i.xsks.MaxEntries())
	}
	if _, ok := i.ports[queue]; ok {
		return nil, fmt.Errorf("afxdp: %s: queue %d is already open", i.name, queue)
	}
	p, err := newPort(i, portName, queue)
	if err != nil {
		return nil, err
	}
	if err := i.xsks.Put(uint32(queue), uint32(p.fd)); err != nil {
		p.closeSocket()
		return nil, fmt.Errorf("afxdp: %s: register queue %d socket: %w", i.name, queue, err)
	}
	i.ports[queue] = p
	return p, nil
}

// forget unregisters a closing port's socket from the program.
func (i *Interface) forget(p *Port) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.ports[p.queue] != p {
		return nil
	}
	delete(i.ports, p.queue)
	if err := i.xsks.Delete(uint32(p.queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("afxdp: %s: unregister queue %d: %w", i.name, p.queue, err)
	}
	return nil
}

// Close closes the interface's ports, detaches the program and frees the
// maps. It is safe to call twice.
func (i *Interface) Close() error {
	i.mu.Lock()
	if i.closed {
		i.mu.Unlock()
		return nil
	}
	i.closed = true
	ps := make([]*Port, 0, len(i.ports))
	for _, p := range i.ports {
		ps = append(ps, p)
	}
	i.mu.Unlock()

	var errs []error
	for _, p := range ps {
		errs = append(errs, p.Close())
	}
	if i.link != nil {
		if err := i.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("afxdp: %s: detach XDP program: %w", i.name, err))
		}
	}
	i.coll.Close()
	i.nl.Close()
	return errors.Join(errs...)
}
