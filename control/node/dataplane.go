package node

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"go.uber.org/zap"

	"github.com/psavd/psavd/control/capture"
	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/metrics"
	"github.com/psavd/psavd/control/static"
	"github.com/psavd/psavd/engine"
	"github.com/psavd/psavd/ports"
	"github.com/psavd/psavd/ports/afxdp"
)

// dataPlane is the ABR data plane of a node with [[port]]s: one XDP program
// per interface, one AF_XDP socket per (port, queue), the engine and its
// poll loops, the drop capture.
type dataPlane struct {
	eng    *engine.Engine
	spec   engine.Spec
	ifaces map[string]*afxdp.Interface
	loops  []engine.Loop
	rings  []metrics.RingSource
	col    *metrics.Collector
	capw   *capture.Writer
	capCfg engine.CaptureConfig
	batch  int
	log    *zap.Logger

	prefilters []prefilterPort // interfaces with the XDP pre-filter on (prefilter.go)
}

func (d *dataPlane) engineOrNil() *engine.Engine {
	if d == nil {
		return nil
	}
	return d.eng
}

func (d *dataPlane) collectorOrNil() *metrics.Collector {
	if d == nil {
		return nil
	}
	return d.col
}

// openDataPlane attaches the interfaces and opens the sockets; on error
// everything opened so far is closed again.
func openDataPlane(c *config.Config, log *zap.Logger) (d *dataPlane, err error) {
	d = &dataPlane{spec: c.EngineSpec(), ifaces: map[string]*afxdp.Interface{}, batch: c.Engine.Batch, log: log}
	defer func() {
		if err != nil {
			d.close(log)
		}
	}()
	if d.eng, err = engine.New(d.spec); err != nil {
		return nil, fmt.Errorf("%s: %w", c.File, err)
	}
	queues := make([][]ports.Port, len(c.Ports)) // by engine port, by queue
	for pi, p := range c.Ports {
		ifc, ok := d.ifaces[p.Interface]
		if !ok {
			ifc, err = afxdp.OpenInterface(p.Interface, afxdp.Options{
				Mode: p.XDPMode, Frames: c.Engine.Frames, RingSize: c.Engine.RingSize,
				CrossConnect: d.spec.Forwarding == engine.CrossConnect,
				BusyPoll:     c.Engine.BusyPoll, BusyPollBudget: c.Engine.BusyPollBudget,
			})
			if err != nil {
				return nil, fileErr(c, fmt.Sprintf("port[%d].interface %q", pi, p.Interface), err)
			}
			d.ifaces[p.Interface] = ifc
			log.Info("interface attached", zap.String("interface", p.Interface), zap.String("xdp", ifc.Mode()))
		}
		qs := p.Queues
		if len(qs) == 0 {
			// Every RX queue the NIC spreads traffic over needs a socket:
			// the XDP program drops IP data on a queue without one.
			for q := 0; q < ifc.Queues(); q++ {
				qs = append(qs, q)
			}
		} else if len(qs) < ifc.Queues() {
			log.Warn("not every RX queue has a socket: IP data arriving on the others is dropped",
				zap.String("port", p.Name), zap.Ints("queues", qs), zap.Int("rx_queues", ifc.Queues()))
		}
		for _, q := range qs {
			port, err := ifc.OpenQueue(p.Name, q)
			if err != nil {
				return nil, fileErr(c, fmt.Sprintf("port[%d] %q queue %d", pi, p.Name, q), err)
			}
			d.rings = append(d.rings, metrics.RingSource{Port: p.Name, Queue: q, Stats: func() (metrics.RingStats, error) {
				st, err := port.Stats()
				return metrics.RingStats{RxDropped: st.RxDropped, RxInvalidDescs: st.RxInvalidDescs, TxInvalidDescs: st.TxInvalidDescs,
					RxRingFull: st.RxRingFull, RxFillRingEmptyDescs: st.RxFillRingEmptyDescs, TxRingEmptyDescs: st.TxRingEmptyDescs,
					RxPackets: st.RxPackets, TxPackets: st.TxPackets, TxCompleted: st.TxCompleted, TxKicks: st.TxKicks}, err
			}})
			queues[pi] = append(queues[pi], port)
		}
	}
	if d.spec.Forwarding == engine.Routed {
		rt, err := d.routes(c)
		if err != nil {
			return nil, err
		}
		d.eng.PublishRoutes(rt)
	}

	// Poll loops: loop k receives on one (port, queue) and transmits on the
	// queue with the same index (modulo) of every other port.
	cpus := c.Engine.CPUs
	if len(cpus) == 0 {
		for i := 0; i < runtime.NumCPU(); i++ {
			cpus = append(cpus, i)
		}
	}
	for pi := range queues {
		for qi, port := range queues[pi] {
			outs := make([]ports.Port, len(queues))
			for po := range queues {
				if po != pi && len(queues[po]) > 0 {
					outs[po] = queues[po][qi%len(queues[po])]
				}
			}
			outs[pi] = port // back where it came from: ICMP Packet Too Big (LISP)
			d.loops = append(d.loops, engine.Loop{In: pi, Port: port, Out: outs, CPU: cpus[len(d.loops)%len(cpus)]})
		}
	}
	d.col = metrics.NewCollector(d.eng)
	if err := d.setupPrefilters(c); err != nil {
		return nil, fileErr(c, "port.xdp_prefilter", err)
	}
	if cp := c.Capture; cp != nil {
		names := make([]string, len(d.spec.Ports))
		for i, p := range d.spec.Ports {
			names[i] = p.Name
		}
		if d.capw, err = capture.New(cp.Dir, cp.Sampling.Snap, cp.MaxBytes, cp.Keep, names); err != nil {
			return nil, fileErr(c, "capture.dir", err)
		}
		d.capCfg = cp.Sampling
		log.Info("drop capture", zap.String("dir", cp.Dir), zap.Uint32("every", cp.Sampling.Every), zap.Uint32("per_second", cp.Sampling.PerSecond))
	}
	return d, nil
}

// routes builds the routed-forwarding table of c's [[route]]s, next-hop
// MACs from the configuration or the kernel's neighbour table.
func (d *dataPlane) routes(c *config.Config) (*engine.Routes, error) {
	rt, err := static.Routes(c.Routes, interfaceMAC(c), neighbourMAC(c))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.File, err)
	}
	return rt, nil
}

// role is the poll loops: Fatal, since a node whose data plane died must
// not go on as if it forwarded. Ready once every loop polls.
func (d *dataPlane) role(c *config.Config, counters func(*engine.Engine, metrics.Totals)) Role {
	return Role{Name: "data-plane", Policy: Fatal, Run: func(ctx context.Context, ready func()) error {
		var capDone chan error
		if d.capw != nil {
			capCtx, capStop := context.WithCancel(context.Background())
			capDone = make(chan error, 1)
			go func() { capDone <- d.capw.Run(capCtx, 200*time.Millisecond) }()
			defer func() {
				// After the loops stopped: a last drain, then the files close.
				capStop()
				<-capDone
			}()
		}
		var started atomic.Int32
		err := d.eng.Run(ctx, d.loops, engine.RunOptions{
			Batch:   d.batch,
			OnError: func(err error) { d.log.Warn("data path", zap.Error(err)) },
			Stats: func(p *engine.Processor) {
				d.col.Add(p)
				if d.capw != nil {
					p.EnableCapture(d.capCfg)
					d.capw.Add(p)
				}
			},
			// Started runs once on each loop's goroutine.
			Started: func(*engine.Loop) {
				if started.Add(1) == int32(len(d.loops)) {
					ready()
				}
			},
		})
		if counters != nil {
			counters(d.eng, d.col.Sum())
		}
		return err
	}}
}

func (d *dataPlane) collectors() []prometheus.Collector {
	return []prometheus.Collector{metrics.NewRingCollector(d.rings)}
}

func (d *dataPlane) readyFields() []zap.Field {
	if d == nil {
		return nil
	}
	t := d.eng.Tables()
	return []zap.Field{zap.Int("loops", len(d.loops)),
		zap.Int64("epoch", engine.Epoch(time.Now().Unix(), t.T0, t.Period)), zap.Int("peers", len(t.Peers))}
}

func (d *dataPlane) close(log *zap.Logger) {
	for name, i := range d.ifaces {
		if err := i.Close(); err != nil {
			log.Warn("closing interface", zap.String("interface", name), zap.Error(err))
		}
	}
	d.ifaces = nil
}

func interfaceMAC(c *config.Config) func(int) (net.HardwareAddr, error) {
	return func(port int) (net.HardwareAddr, error) {
		l, err := netlink.LinkByName(c.Ports[port].Interface)
		if err != nil {
			return nil, err
		}
		return l.Attrs().HardwareAddr, nil
	}
}

func neighbourMAC(c *config.Config) func(int, netip.Addr) (net.HardwareAddr, error) {
	return func(port int, ip netip.Addr) (net.HardwareAddr, error) {
		ifname := c.Ports[port].Interface
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return nil, err
		}
		family := netlink.FAMILY_V4
		if ip.Is6() {
			family = netlink.FAMILY_V6
		}
		neighs, err := netlink.NeighList(l.Attrs().Index, family)
		if err != nil {
			return nil, err
		}
		for _, n := range neighs {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && len(n.HardwareAddr) == 6 {
				return n.HardwareAddr, nil
			}
		}
		return nil, fmt.Errorf("no neighbour entry for %s on %s (give next_hop_mac, or make sure the next hop is reachable)", ip, ifname)
	}
}
