package config

import (
	"fmt"
	"time"

	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/engine"
)

// Engine is [engine]. Policy also holds [lisp]'s data-plane choices
// (on_miss, too_big, icmp_rate), filled by the [lisp] check.
type Engine struct {
	Forwarding engine.Forwarding // default cross-connect
	CPUs       []int             // poll loops pinned round robin; nil: every CPU
	Batch      int               // frames per batch, 1 … 1024, default 64
	Frames     int               // UMEM frames per socket, a power of two, 2×batch … 1048576, default 4096
	RingSize   int               // AF_XDP ring size, a power of two, 64 … 65536, default 2048
	// BusyPoll (0: off, up to 1 s) and BusyPollBudget (1 … 65535, default
	// Batch; only with BusyPoll) are afxdp.Options.BusyPoll and
	// BusyPollBudget.
	BusyPoll       time.Duration
	BusyPollBudget int
	Policy         engine.Policy
}

// MaxCPU bounds engine.cpus: a CPU number at or above it cannot be put in
// an affinity mask (CPU_SETSIZE).
const MaxCPU = 1024

func (c *Config) checkEngine(k *checker, f *schema.File) {
	e := f.Engine
	fwd := orDefault(k.set("engine.forwarding"), e.Forwarding, "cross-connect")
	if k.oneOf("engine.forwarding", fwd, "cross-connect", "routed") && fwd == "routed" {
		c.Engine.Forwarding = engine.Routed
	}
	if si := orDefault(k.set("engine.spoofed_inside"), e.SpoofedInside, "drop"); k.oneOf("engine.spoofed_inside", si, "drop", "forward") {
		c.Engine.Policy.ForwardSpoofedInside = si == "forward"
	}
	if nr := orDefault(k.set("engine.no_room"), e.NoRoom, "forward"); k.oneOf("engine.no_room", nr, "forward", "drop") {
		c.Engine.Policy.DropNoRoom = nr == "drop"
	}
	if nk := orDefault(k.set("engine.no_key"), e.NoKey, "forward"); k.oneOf("engine.no_key", nk, "forward", "drop") {
		c.Engine.Policy.FailClosed = nk == "drop"
	}
	c.Engine.Batch = orDefault(k.set("engine.batch"), e.Batch, 64)
	between(k, "engine.batch", c.Engine.Batch, 1, 1024)
	c.Engine.RingSize = orDefault(k.set("engine.ring_size"), e.RingSize, 2048)
	if r := c.Engine.RingSize; r < 64 || r > 1<<16 || r&(r-1) != 0 {
		k.add("engine.ring_size", "must be a power of two 64 … 65536, is %d", r)
	}
	c.Engine.Frames = orDefault(k.set("engine.frames"), e.Frames, 4096)
	if fr := c.Engine.Frames; fr < 2*c.Engine.Batch || fr > 1<<20 || fr&(fr-1) != 0 {
		k.add("engine.frames", "must be a power of two ≥ 2 × batch and ≤ 1048576, is %d", fr)
	}
	c.Engine.BusyPoll = k.duration("engine.busy_poll", e.BusyPoll, 0, time.Microsecond, time.Second)
	if k.set("engine.busy_poll_budget") {
		if !k.set("engine.busy_poll") {
			k.add("engine.busy_poll_budget", "set without engine.busy_poll: busy polling is off")
		}
		c.Engine.BusyPollBudget = e.BusyPollBudget
		between(k, "engine.busy_poll_budget", e.BusyPollBudget, 1, 65535)
	} else if c.Engine.BusyPoll > 0 {
		c.Engine.BusyPollBudget = c.Engine.Batch
	}
	for i, cpu := range e.CPUs {
		if cpu < 0 {
			k.add(fmt.Sprintf("engine.cpus[%d]", i), "must not be negative")
		} else if cpu >= MaxCPU {
			k.add(fmt.Sprintf("engine.cpus[%d]", i), "must be below %d, is %d", MaxCPU, cpu)
		}
	}
	if k.set("engine.cpus") && len(e.CPUs) == 0 {
		k.add("engine.cpus", "empty: leave the key out to use every CPU")
	}
	c.Engine.CPUs = append([]int(nil), e.CPUs...)
	if len(c.Engine.CPUs) == 0 {
		c.Engine.CPUs = nil
	}
}
