package gen

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// XDP verdicts.
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

// newCounterMap makes a per-CPU array of n uint64 counters.
func newCounterMap(name string, n uint32) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       name,
		Type:       ebpf.PerCPUArray,
		KeySize:    4,
		ValueSize:  8,
		MaxEntries: n,
	})
	if err != nil {
		return nil, fmt.Errorf("gen: create map %s: %w", name, err)
	}
	return m, nil
}

// incrementR6 adds one to counter[r6] of the per-CPU array m (no atomics:
// a per-CPU slot is only written by its CPU, with preemption off).
// Clobbers r1–r5 and r0.
func incrementR6(m *ebpf.Map, done string) asm.Instructions {
	return asm.Instructions{
		asm.StoreMem(asm.RFP, -4, asm.R6, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, done),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
	}
}

// newGenProgram is the generator's XDP program for BPF_PROG_TEST_RUN in live
// frame mode. It counts the frame in counter[0] and returns XDP_TX, which the
// kernel turns into a transmission on the ingress interface given in the
// run's xdp_md — i.e. the frame is handed to that veth's peer.
//
// With several templates (ntemplates > 1) the run's data is a buffer of
// maxLen octets, and the program first overwrites it with template
// (count mod ntemplates) from the array map templates and trims the tail to
// that template's length (bpf_xdp_adjust_tail), so consecutive frames of
// one CPU take the templates in turn. The kernel restores the frame's bounds
// before every run of the program.
func newGenProgram(counter, templates *ebpf.Map, ntemplates, maxLen int) (*ebpf.Program, error) {
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, counter.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "tx"),
		asm.LoadMem(asm.R7, asm.R0, 0, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
	}
	if ntemplates > 1 {
		insns = append(insns,
			asm.Mod.Imm(asm.R7, int32(ntemplates)),
			asm.StoreMem(asm.RFP, -4, asm.R7, asm.Word),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, templates.FD()),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "tx"),
			asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
			asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, int32(maxLen)),
			asm.JGT.Reg(asm.R4, asm.R3, "tx"),
		)
		off := 0
		for ; off+8 <= maxLen; off += 8 {
			insns = append(insns,
				asm.LoadMem(asm.R5, asm.R0, int16(templateHdr+off), asm.DWord),
				asm.StoreMem(asm.R2, int16(off), asm.R5, asm.DWord))
		}
		for ; off < maxLen; off++ {
			insns = append(insns,
				asm.LoadMem(asm.R5, asm.R0, int16(templateHdr+off), asm.Byte),
				asm.StoreMem(asm.R2, int16(off), asm.R5, asm.Byte))
		}
		insns = append(insns,
			asm.LoadMem(asm.R2, asm.R0, 0, asm.Word), // tail delta (≤ 0, as int)
			asm.JEq.Imm(asm.R2, 0, "tx"),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.FnXdpAdjustTail.Call(),
		)
	}
	insns = append(insns,
		asm.Mov.Imm(asm.R0, xdpTX).WithSymbol("tx"),
		asm.Return(),
	)
	return loadXDP("psav_gen", insns)
}

// templateHdr is the size of the header in front of each template in the
// templates map: a 32-bit tail delta (template length − maxLen), 4 spare.
const templateHdr = 8

// newTemplateMap stores the templates, each padded to maxLen (rounded up to
// 8) behind its tail delta.
func newTemplateMap(frames [][]byte, maxLen int) (*ebpf.Map, error) {
	size := templateHdr + (maxLen+7)/8*8
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       "psav_gen_tmpl",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  uint32(size),
		MaxEntries: uint32(len(frames)),
	})
	if err != nil {
		return nil, fmt.Errorf("gen: create template map: %w", err)
	}
	for i, f := range frames {
		v := make([]byte, size)
		binary.NativeEndian.PutUint32(v, uint32(int32(len(f)-maxLen)))
		copy(v[templateHdr:], f)
		if err := m.Put(uint32(i), v); err != nil {
			m.Close()
			return nil, fmt.Errorf("gen: store template %d: %w", i, err)
		}
	}
	return m, nil
}

// Sink counter slots, by what the frame looks like.
const (
	slotIPv4        = iota // IPv4, IHL 5
	slotIPv4Options        // IPv4 with options (IHL > 5): e.g. a PSAV tag
	slotIPv6               // IPv6, next header not Destination Options
	slotIPv6DestOpt        // IPv6 followed by Destination Options: e.g. a PSAV tag
	slotOther              // anything else, or shorter than 34 octets
	numSlots
)

// ProbeTOS marks latency probes: an IPv4 frame with this TOS octet (DSCP
// EF) is counted by the sink like any other and then passed to the kernel
// (XDP_PASS) instead of dropped, so that a packet socket on the sink's
// interface receives it with a timestamp (bench/harness). The generator's
// frames have TOS 0.
const ProbeTOS = 0xb8

// newSinkProgram is the sink's XDP program: classify the frame into a slot,
// count it there and drop it (pass it if it is a probe, see ProbeTOS).
func newSinkProgram(counter *ebpf.Map) (*ebpf.Program, error) {
	insns := asm.Instructions{
		asm.Mov.Imm(asm.R7, xdpDrop),             // verdict (r7 survives calls)
		asm.LoadMem(asm.R2, asm.R1, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R1, 4, asm.Word), // data_end
		asm.Mov.Imm(asm.R6, slotOther),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 34),
		asm.JGT.Reg(asm.R4, asm.R3, "count"),
		asm.LoadMem(asm.R5, asm.R2, 12, asm.Half), // EtherType, network order
		asm.JNE.Imm(asm.R5, 0x0008, "v6"),         // 0x0800 loaded little-endian
		asm.LoadMem(asm.R5, asm.R2, 15, asm.Byte), // TOS
		asm.JNE.Imm(asm.R5, ProbeTOS, "v4"),
		asm.Mov.Imm(asm.R7, xdpPass),
		asm.LoadMem(asm.R5, asm.R2, 14, asm.Byte).WithSymbol("v4"),
		asm.And.Imm(asm.R5, 0x0f),
		asm.Mov.Imm(asm.R6, slotIPv4),
		asm.JEq.Imm(asm.R5, 5, "count"),
		asm.Mov.Imm(asm.R6, slotIPv4Options),
		asm.Ja.Label("count"),
		asm.JNE.Imm(asm.R5, 0xdd86, "count").WithSymbol("v6"), // 0x86DD
		asm.LoadMem(asm.R5, asm.R2, 20, asm.Byte),             // next header
		asm.Mov.Imm(asm.R6, slotIPv6),
		asm.JNE.Imm(asm.R5, 60, "count"),
		asm.Mov.Imm(asm.R6, slotIPv6DestOpt),
	}
	inc := incrementR6(counter, "out")
	inc[0] = inc[0].WithSymbol("count")
	insns = append(insns, inc...)
	insns = append(insns,
		asm.Mov.Reg(asm.R0, asm.R7).WithSymbol("out"),
		asm.Return(),
	)
	return loadXDP("psav_sink", insns)
}

// NewPassProgram returns an XDP program that passes every frame to the
// kernel. Attached to a veth, it turns on the veth's NAPI receive path, which
// a veth needs to accept frames redirected or XDP_TX'ed to it by its peer.
func NewPassProgram() (*ebpf.Program, error) {
	return loadXDP("psav_pass", asm.Instructions{
		asm.Mov.Imm(asm.R0, xdpPass),
		asm.Return(),
	})
}

// NewRedirectProgram returns an XDP program that redirects every frame to
// the interface ifindex (an in-kernel forwarder, the upper bound of what a
// forwarder on veths can reach).
func NewRedirectProgram(ifindex int) (*ebpf.Program, error) {
	return loadXDP("psav_redirect", asm.Instructions{
		asm.Mov.Imm(asm.R1, int32(ifindex)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
	})
}

func loadXDP(name string, insns asm.Instructions) (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         name,
		Type:         ebpf.XDP,
		Instructions: insns,
		License:      "GPL",
	})
	if err != nil {
		return nil, fmt.Errorf("gen: load XDP program %s: %w", name, err)
	}
	return p, nil
}
