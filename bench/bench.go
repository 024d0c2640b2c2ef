// Package bench measures how many packets per second one ABR forwards on
// veths: a generator namespace injects frames at a rate no forwarder here can
// carry (bench/gen: BPF_PROG_TEST_RUN live frames), the device under test
// forwards them from its In interface to its Out interface in a middle
// namespace, and an XDP sink in a third namespace counts what arrives:
//
//	[gen ns] gen0 ⇄ in0 [mid ns: DUT] out0 ⇄ sink0 [sink ns]
//
// The DUT is pluggable (the DUT interface): Linux forwarding and an XDP
// redirect serve as baselines, a bare AF_XDP forwarder built on ports and
// psavd itself are the cases the issue compares. Run reports the rate
// delivered at the sink over a fixed window after a warm-up, the rate
// offered, and the loss (offered − delivered) in that window.
package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/psavd/psavd/bench/gen"
	"github.com/psavd/psavd/internal/netlab"
)

// Interface names of the topology.
const (
	GenIf  = "gen0"  // generator namespace, faces the DUT
	InIf   = "in0"   // middle namespace, the DUT's input (peer of gen0)
	OutIf  = "out0"  // middle namespace, the DUT's output (peer of sink0)
	SinkIf = "sink0" // sink namespace
)

// MAC addresses of the topology (locally administered, fixed so frames can
// be built in advance).
var (
	GenMAC  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x0a, 0x01}
	InMAC   = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x0b, 0x01}
	OutMAC  = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x0b, 0x02}
	SinkMAC = net.HardwareAddr{0x02, 0x00, 0x00, 0x00, 0x0c, 0x01}
)

// Env is what a DUT is told when it starts.
type Env struct {
	// NS is the middle namespace; In and Out live there.
	NS string
	// In receives the generator's frames; Out leads to the sink.
	In, Out string
	// MACs of In, Out and of their peers (the generator's and the sink's
	// interfaces), e.g. for static neighbour entries.
	InMAC, OutMAC, GenMAC, SinkMAC net.HardwareAddr
	// CPUs the DUT should run on (pin its poll loops there); the generator
	// runs on the others. May be empty: no preference.
	CPUs []int
}

// A DUT is a forwarder under test. Start brings it up inside env.NS between
// env.In and env.Out and returns once it forwards (or ctx is done); Stop
// tears it down and releases everything it attached (XDP programs,
// sockets, processes). Run calls Start once and Stop once, even on failure.
//
// A veth only accepts the generator's XDP frames if its peer runs NAPI, so
// the DUT must attach an XDP program to In (an AF_XDP forwarder does, and
// so must any other DUT — see PassXDP). Out's peer, the sink, has one.
type DUT interface {
	Name() string
	Start(ctx context.Context, env Env) error
	Stop() error
}

// Scenario is the traffic and the timing of a run.
type Scenario struct {
	// Name labels the result.
	Name string
	// Frames are the templates, taken in turn frame by frame (nil: the
	// IPv4 and IPv6 frames of DefaultFrames).
	Frames [][]byte
	// Warmup is the time the traffic runs before the window (default 1 s):
	// rings fill, caches warm, the DUT reaches its steady state.
	Warmup time.Duration
	// Duration is the measurement window (default 5 s).
	Duration time.Duration
	// GenCPUs are the CPUs of the generator's threads, one thread each
	// (default [0]). Note that the generator's CPU also runs In's receive
	// path (the veth NAPI of In, i.e. the DUT's XDP program), because a
	// veth processes what it is handed in the sender's softirq.
	GenCPUs []int
	// DUTCPUs are passed to the DUT (default: every CPU not in GenCPUs).
	DUTCPUs []int
	// SinkNAPICPUs, if set, moves the sink's receive path (veth NAPI)
	// into a kernel thread pinned to these CPUs (ThreadNAPI). By default it
	// runs in the softirq of the CPU that transmitted to it — the DUT's —
	// and is charged to the DUT.
	SinkNAPICPUs []int
	// InNAPICPUs, if set, does the same for In once the DUT has started
	// (the DUT's XDP program and AF_XDP receive copy), which by default run
	// on the generator's CPU.
	InNAPICPUs []int
	// Queues is the number of queues of every veth (default 1). A veth
	// hands an XDP frame to its peer's queue numbered after the sending CPU
	// (modulo Queues): with several generator CPUs and one queue they all
	// contend for one ring and one NAPI, which can be slower than one CPU.
	// A DUT must then serve every queue of In (psavd's queues = [...]).
	Queues int
	// Check, if set, judges what the sink received in the window (e.g.
	// "every frame carries a tag"); its error fails the run.
	Check func(delivered gen.Counts) error
	// Observer, if set, watches the run from outside the DUT (probe
	// packets, CPU time): see Observer.
	Observer Observer
	// Idle runs no generator: the DUT sees only what the Observer sends
	// (e.g. latency probes without load). Frames and GenCPUs are unused.
	Idle bool
}

// An Observer measures alongside a run (bench/harness: latency probes, the
// DUT's CPU time). Run calls Start once the DUT forwards, before the
// warm-up, with the generator's and the sink's namespaces; Window right
// after the snapshot at the start (end false) and at the end (end true) of
// the window; Stop once before the topology is removed, also on failure
// (if Start was called).
type Observer interface {
	Start(ctx context.Context, genNS, sinkNS string) error
	Window(end bool)
	Stop() error
}

// DefaultFrames returns the benchmark's templates, both 64 octets from the
// generator's interface to In: IPv4/UDP 198.51.100.10 → 203.0.113.10 and
// IPv6/UDP 2001:db8:1::10 → 2001:db8:2::10 (AS 65001 to AS 65002).
func DefaultFrames() (v4, v6 []byte, err error) {
	return gen.ScenarioFrames(GenMAC, InMAC)
}

// Result is what one run measured, over the window only.
type Result struct {
	Scenario string
	DUT      string // "direct" when there was none
	Window   time.Duration
	// Generated is the number of frames the generator transmitted.
	Generated uint64
	// Delivered is what the sink counted, by kind.
	Delivered gen.Counts
}

// Mpps is the rate delivered at the sink, in million frames per second.
func (r Result) Mpps() float64 { return float64(r.Delivered.Total()) / r.Window.Seconds() / 1e6 }

// OfferedMpps is the rate the generator offered.
func (r Result) OfferedMpps() float64 { return float64(r.Generated) / r.Window.Seconds() / 1e6 }

// Loss is Generated − Delivered: frames the DUT dropped (or could not take).
// Frames in flight at the edges of the window make it off by a few, either
// way.
func (r Result) Loss() int64 { return int64(r.Generated) - int64(r.Delivered.Total()) }

// LossRatio is Loss / Generated.
func (r Result) LossRatio() float64 {
	if r.Generated == 0 {
		return 0
	}
	return float64(r.Loss()) / float64(r.Generated)
}

// Ratio is r's delivered rate relative to base's (the (b)/(a) and
// (c)/(a)); 0 if base delivered nothing.
func (r Result) Ratio(base Result) float64 {
	if base.Mpps() == 0 {
		return 0
	}
	return r.Mpps() / base.Mpps()
}

func (r Result) String() string {
	return fmt.Sprintf("%s/%s: %.3f Mpps delivered, %.3f Mpps offered, loss %.1f%% over %v; sink %v",
		r.Scenario, r.DUT, r.Mpps(), r.OfferedMpps(), 100*r.LossRatio(), r.Window.Round(time.Millisecond), r.Delivered)
}

func (sc Scenario) withDefaults() (Scenario, error) {
	if sc.Frames == nil {
		v4, v6, err := DefaultFrames()
		if err != nil {
			return sc, err
		}
		sc.Frames = [][]byte{v4, v6}
	}
	if sc.Warmup == 0 {
		sc.Warmup = time.Second
	}
	if sc.Duration == 0 {
		sc.Duration = 5 * time.Second
	}
	if sc.GenCPUs == nil {
		sc.GenCPUs = []int{0}
	}
	if sc.DUTCPUs == nil {
		gen := map[int]bool{}
		for _, c := range sc.GenCPUs {
			gen[c] = true
		}
		for c := range runtime.NumCPU() {
			if !gen[c] {
				sc.DUTCPUs = append(sc.DUTCPUs, c)
			}
		}
	}
	if sc.Name == "" {
		sc.Name = "default"
	}
	if sc.Queues <= 0 {
		sc.Queues = 1
	}
	return sc, nil
}

// Supported reports why Run cannot work here ("" when it can).
func Supported() string {
	if why := netlab.Supported(); why != "" {
		return why
	}
	return gen.Supported()
}

// Run builds a fresh topology, starts dut in the middle namespace, floods it
// with sc.Frames and measures. A nil dut measures the generator straight
// into the sink (gen0 ⇄ sink0, no middle namespace): the ceiling any DUT is
// measured against. Everything Run builds is torn down before it returns,
// on failure too.
func Run(ctx context.Context, sc Scenario, dut DUT) (res Result, err error) {
	if sc, err = sc.withDefaults(); err != nil {
		return res, err
	}
	res = Result{Scenario: sc.Name, DUT: "direct"}
	if dut != nil {
		res.DUT = dut.Name()
	}

	topo := netlab.New()
	defer func() {
		if cerr := topo.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("bench: remove topology: %w", cerr))
		}
	}()
	gns, err := topo.NS("gen")
	if err != nil {
		return res, err
	}
	sns, err := topo.NS("sink")
	if err != nil {
		return res, err
	}
	nss := []string{gns, sns}
	var mns string
	if dut != nil {
		if mns, err = topo.NS("mid"); err != nil {
			return res, err
		}
		nss = append(nss, mns)
	}
	// No IPv6 unless a DUT turns it on for its interfaces: the kernel then
	// sends nothing of its own (ND, MLD) that the sink would count.
	for _, ns := range nss {
		if err := gen.Quiet(ns); err != nil {
			return res, err
		}
	}
	if dut != nil {
		if err := veth(topo, sc.Queues, gns, GenIf, GenMAC, mns, InIf, InMAC); err != nil {
			return res, err
		}
		if err := veth(topo, sc.Queues, mns, OutIf, OutMAC, sns, SinkIf, SinkMAC); err != nil {
			return res, err
		}
	} else if err := veth(topo, sc.Queues, gns, GenIf, GenMAC, sns, SinkIf, SinkMAC); err != nil {
		return res, err
	}

	sink, err := gen.NewSink(sns, SinkIf)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, sink.Close()) }()
	if len(sc.SinkNAPICPUs) > 0 {
		if err := ThreadNAPI(sns, SinkIf, sc.SinkNAPICPUs); err != nil {
			return res, err
		}
	}

	if dut != nil {
		env := Env{NS: mns, In: InIf, Out: OutIf, InMAC: InMAC, OutMAC: OutMAC,
			GenMAC: GenMAC, SinkMAC: SinkMAC, CPUs: sc.DUTCPUs}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		serr := dut.Start(sctx, env)
		cancel()
		// Assigns Run's own err (a := here would hide a failed Stop).
		defer func() {
			if serr := dut.Stop(); serr != nil {
				err = errors.Join(err, fmt.Errorf("bench: stop %s: %w", dut.Name(), serr))
			}
		}()
		if serr != nil {
			return res, fmt.Errorf("bench: start %s: %w", dut.Name(), serr)
		}
		if len(sc.InNAPICPUs) > 0 {
			if err := ThreadNAPI(mns, InIf, sc.InNAPICPUs); err != nil {
				return res, err
			}
		}
	}

	if sc.Observer != nil {
		defer func() { err = errors.Join(err, sc.Observer.Stop()) }()
		if err := sc.Observer.Start(ctx, gns, sns); err != nil {
			return res, err
		}
	}

	var g *gen.Generator
	if !sc.Idle {
		if g, err = gen.New(gen.Config{NS: gns, Iface: GenIf, Frames: sc.Frames}); err != nil {
			return res, err
		}
		defer func() { err = errors.Join(err, g.Close()) }()

		fctx, stop := context.WithCancel(ctx)
		defer stop()
		floodErr := make(chan error, 1)
		go func() { floodErr <- g.Flood(fctx, sc.GenCPUs) }()
		// The flood stops at the latest when Run returns.
		defer func() {
			stop()
			if ferr := <-floodErr; ferr != nil {
				err = errors.Join(err, ferr)
			}
		}()
	}

	snapshot := func() (uint64, gen.Counts, time.Time, error) {
		var s uint64
		if g != nil {
			var err error
			if s, err = g.Sent(); err != nil {
				return 0, gen.Counts{}, time.Time{}, err
			}
		}
		c, err := sink.Counts()
		return s, c, time.Now(), err
	}
	if err := sleep(ctx, sc.Warmup); err != nil {
		return res, err
	}
	s0, c0, t0, err := snapshot()
	if err != nil {
		return res, err
	}
	if sc.Observer != nil {
		sc.Observer.Window(false)
	}
	if err := sleep(ctx, sc.Duration); err != nil {
		return res, err
	}
	s1, c1, t1, err := snapshot()
	if err != nil {
		return res, err
	}
	if sc.Observer != nil {
		sc.Observer.Window(true)
	}
	res.Window, res.Generated, res.Delivered = t1.Sub(t0), s1-s0, c1.Sub(c0)
	if res.Generated == 0 && !sc.Idle {
		return res, errors.New("bench: the generator sent nothing in the window")
	}
	if sc.Check != nil {
		if err := sc.Check(res.Delivered); err != nil {
			return res, fmt.Errorf("bench: %s/%s: %w", sc.Name, res.DUT, err)
		}
	}
	return res, nil
}

// veth makes a veth pair with q queues on each end (netlab.Veth makes
// single-queue ones), both ends up.
func veth(topo *netlab.Topology, q int, nsA, ifA string, macA net.HardwareAddr, nsB, ifB string, macB net.HardwareAddr) error {
	if q == 1 {
		return topo.Veth(nsA, ifA, macA.String(), nsB, ifB, macB.String())
	}
	n := fmt.Sprint(q)
	if err := netlab.IP("link", "add", ifA, "netns", nsA, "address", macA.String(),
		"numtxqueues", n, "numrxqueues", n, "type", "veth", "peer", "name", ifB, "netns", nsB,
		"address", macB.String(), "numtxqueues", n, "numrxqueues", n); err != nil {
		return err
	}
	if err := netlab.IP("-n", nsA, "link", "set", ifA, "up"); err != nil {
		return err
	}
	return netlab.IP("-n", nsB, "link", "set", ifB, "up")
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// AllTagged is a Scenario.Check for a tagging DUT: every IP frame delivered
// carries a tag (IPv4 options, IPv6 Destination Options), and something was
// delivered.
func AllTagged(c gen.Counts) error {
	if c.Total() == 0 {
		return errors.New("nothing delivered")
	}
	if c.IPv4 != 0 || c.IPv6 != 0 {
		return fmt.Errorf("untagged frames delivered: %v", c)
	}
	return nil
}

// NoneTagged is a Scenario.Check for a validating (tag-stripping) DUT or a
// plain forwarder: IP frames delivered carry no tag, and something was
// delivered.
func NoneTagged(c gen.Counts) error {
	if c.Total() == 0 {
		return errors.New("nothing delivered")
	}
	if c.IPv4Options != 0 || c.IPv6DestOpt != 0 {
		return fmt.Errorf("tagged frames delivered: %v", c)
	}
	return nil
}
