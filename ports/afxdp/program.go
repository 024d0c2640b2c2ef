package afxdp

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/engine/header"
)

// ProgramName is the kernel name of psavd's XDP program. OpenInterface
// recognises a stale program of ours by it (and refuses to touch a program
// with any other name).
const ProgramName = "psavd_xdp"

// Map names (kernel map names are limited to 15 characters).
const (
	mapXSKs   = "psavd_xsks"  // XSKMAP: rx queue index -> AF_XDP socket
	mapLocals = "psavd_local" // hash: 16-byte address -> 1 (the node's own addresses)
	mapConfig = "psavd_cfg"   // array[1] of u32 flags
	// The pre-filter's maps (prefilter.go).
	mapPrefixes = "psavd_pfx"   // LPM trie: (generation, 16-byte prefix) -> class
	mapPFCounts = "psavd_pfcnt" // per-CPU array: drops by pre-filter reason, sample tick
	mapPFDead   = "psavd_pfdl"  // array[1] of u64: CLOCK_MONOTONIC ns after which the epoch checks stop
)

// Flags of the config map (one u32 at key 0).
const (
	// cfgCrossConnect: the port is a bump in the wire, so non-IP frames
	// (ARP, NDP not for us, anything else) are forwarded through the socket.
	cfgCrossConnect = 1 << 0
	// cfgFailClosed: IP data whose queue has no socket is dropped rather
	// than handed to the kernel (which would route it around psavd).
	cfgFailClosed = 1 << 1
	// The pre-filter (prefilter.go): bits 2-5 and the generation/epoch
	// fields are written by Prefilter, in the same word, so that one load
	// gives a packet one consistent view.
	cfgPrefilter  = 1 << 2 // EGRESS port: drop certain spoofed-local
	cfgPFValidate = 1 << 3 // the way out is INGRESS: also no-tag and stale-epoch
	cfgPFSample   = 1 << 4 // every pfSampleEvery-th drop goes to the socket (drop capture)
	cfgEpochValid = 1 << 5 // the epoch octet below is meaningful
	cfgGenShift   = 8      // bit 8: LPM generation in use
	cfgEpochShift = 16     // bits 16-23: epoch octet e mod 256
	cfgLowFlags   = 0xff   // the bits Options and Prefilter own
)

// XDP action codes (enum xdp_action).
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTx       = 3
	xdpRedirect = 4
)

// Map sizes.
const (
	minXSKEntries = 64
	maxLocalAddrs = 1024
)

// Frame layout offsets used by the program (all relative to ctx->data).
const (
	offEthType = 12 // Ethernet type/length
	lenEth     = 14 // Ethernet header

	// ARP (RFC 826) for Ethernet/IPv4: header at 14.
	offARPPType = lenEth + 2  // protocol type (0x0800)
	offARPHLen  = lenEth + 4  // hardware address length (6)
	offARPPLen  = lenEth + 5  // protocol address length (4)
	offARPTPA   = lenEth + 24 // target protocol address
	endARP      = lenEth + 28

	// IPv4 header at 14.
	offIP4VerIHL = lenEth + 0
	offIP4Frag   = lenEth + 6 // flags + fragment offset
	offIP4Proto  = lenEth + 9
	offIP4Dst    = lenEth + 16
	endIP4       = lenEth + 20

	// IPv6 header at 14.
	offIP6Next = lenEth + 6
	offIP6Dst  = lenEth + 24
	endIP6     = lenEth + 40

	// What directly follows the IPv6 header.
	offIP6L4        = endIP6      // ICMPv6 type or UDP source port
	offIP6UDPDst    = endIP6 + 2  // UDP destination port
	offNSTarget     = endIP6 + 8  // ICMPv6 Neighbor Solicitation target address
	endNS           = endIP6 + 24 // end of the NS target
	endIP6UDPHeader = endIP6 + 8
)

// Protocol numbers and ports the program looks at.
const (
	ethIPv4    = 0x0800
	ethIPv6    = 0x86DD
	ethARP     = 0x0806
	ethVLAN    = 0x8100
	ethQinQ    = 0x88A8
	protoUDP   = 17
	protoICMP6 = 58
	// LISPDataPort is the UDP port of LISP data (RFC 9300): such packets to
	// a local address are data for the engine, not control traffic, except
	// those with the I bit and instance-ID header.LISPDecentInstanceID:
	// LISP-Decent's unicast replication, a Map-Register for the push node,
	// handed to the kernel (its data socket).
	LISPDataPort = header.LISPDataPort
	icmp6RS      = 133 // first NDP type (Router Solicitation)
	icmp6NS      = 135 // Neighbor Solicitation
	icmp6Redir   = 137 // last NDP type (Redirect)
)

// Stack layout of the program (offsets from the frame pointer R10).
const (
	stKey    = -16 // 16-byte address key for the local-address map
	stCfgKey = -28 // u32 key 0 for the config map
	// The pre-filter's LPM key is {prefixlen u32, generation u32, address
	// [16]byte} at stPfxLen (all stack accesses aligned, as the verifier
	// demands): the address part is the same 16 bytes as stKey.
	stPfxLen = -24
	stGen    = -20
	stCntKey = -32 // u32 key of the counter map
	stShape  = -40 // u64: pfUntagged, pfTagged or pfTaggedOther
	stEpoch  = -48 // u64: epoch octet of a tag
	stSmpKey = -52 // u32 key of the sample tick
	stDlKey  = -56 // u32 key 0 of the deadline map
	stNow    = -64 // u64: bpf_ktime_get_ns()
)

// collectionSpec returns the maps and the XDP program. xskEntries is the
// size of the XSKMAP (at least the interface's number of rx queues).
func collectionSpec(xskEntries int) *ebpf.CollectionSpec {
	if xskEntries < minXSKEntries {
		xskEntries = minXSKEntries
	}
	return &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			mapXSKs: {
				Name:       mapXSKs,
				Type:       ebpf.XSKMap,
				KeySize:    4,
				ValueSize:  4,
				MaxEntries: uint32(xskEntries),
			},
			mapLocals: {
				Name:       mapLocals,
				Type:       ebpf.Hash,
				KeySize:    16,
				ValueSize:  1,
				MaxEntries: maxLocalAddrs,
			},
			mapPrefixes: {
				Name:       mapPrefixes,
				Type:       ebpf.LPMTrie,
				KeySize:    pfKeySize,
				ValueSize:  1,
				MaxEntries: maxPrefilterEntries,
				Flags:      unix.BPF_F_NO_PREALLOC, // required for LPM tries
			},
			mapPFCounts: {
				Name:       mapPFCounts,
				Type:       ebpf.PerCPUArray,
				KeySize:    4,
				ValueSize:  8,
				MaxEntries: pfNumCounters,
			},
			mapPFDead: {
				Name:       mapPFDead,
				Type:       ebpf.Array,
				KeySize:    4,
				ValueSize:  8,
				MaxEntries: 1,
			},
			mapConfig: {
				Name:       mapConfig,
				Type:       ebpf.Array,
				KeySize:    4,
				ValueSize:  4,
				MaxEntries: 1,
			},
		},
		Programs: map[string]*ebpf.ProgramSpec{
			ProgramName: {
				Name:         ProgramName,
				Type:         ebpf.XDP,
				License:      "Dual MIT/GPL",
				Instructions: xdpInstructions(),
			},
		},
	}
}

// lookupLocal emits a lookup of the 16-byte key on the stack at stKey in the
// local-address map and a jump to hit when the address is the node's own.
// It clobbers R0-R5 (helper call); R6-R9 survive.
func lookupLocal(hit string) asm.Instructions {
	return asm.Instructions{
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapLocals), // r1 = &psavd_local
		asm.Mov.Reg(asm.R2, asm.RFP),                       // r2 = fp
		asm.Add.Imm(asm.R2, stKey),                         // r2 = fp-16 (key)
		asm.FnMapLookupElem.Call(),                         // r0 = lookup(r1, r2)
		asm.JNE.Imm(asm.R0, 0, hit),                        // found: local address
	}
}

// boundsCheck emits "if ctx->data + end > ctx->data_end goto fail": after it
// the verifier accepts packet reads at offsets below end through R7.
// A non-empty sym labels the first instruction.
func boundsCheck(sym string, end int32, fail string) asm.Instructions {
	first := asm.Mov.Reg(asm.R2, asm.R7) // r2 = data
	if sym != "" {
		first = first.WithSymbol(sym)
	}
	return asm.Instructions{
		first,
		asm.Add.Imm(asm.R2, end),          // r2 = data + end
		asm.JGT.Reg(asm.R2, asm.R8, fail), // past data_end: too short
	}
}

// xdpInstructions builds the XDP program (there is no C compiler on the
// build machines, so it is written in BPF assembly). Register use:
//
//	R6 = ctx (struct xdp_md *), R7 = ctx->data, R8 = ctx->data_end,
//	R9 = config flags; R0-R5 are scratch (clobbered by helper calls).
//
// Decisions (see docs/wire.md §2.1 and the package documentation):
//
//	"pass": XDP_PASS, the frame goes to the kernel stack;
//	"ctl":  redirect to the queue's socket, XDP_PASS if there is none
//	        (non-IP frames of a cross-connect port);
//	"data": redirect to the queue's socket, XDP_DROP (fail closed, default)
//	        or XDP_PASS if there is none.
func xdpInstructions() asm.Instructions {
	// The 12-byte prefix of an IPv4-mapped IPv6 address, ::ffff:0:0/96: its
	// last 4 bytes (00 00 ff ff) as a u32 in host byte order, so that a
	// 4-byte store writes those bytes in that order. The immediate of a
	// BPF store is a signed 32-bit field, hence the int32 conversion.
	// (StoreImm has no 8-byte form: zeros are stored as two words.)
	v4mappedWord := int64(int32(binary.NativeEndian.Uint32([]byte{0, 0, 0xff, 0xff})))

	var p asm.Instructions
	add := func(ins ...asm.Instruction) { p = append(p, ins...) }
	addAll := func(insns asm.Instructions) { p = append(p, insns...) }

	// --- Prologue: keep ctx, data and data_end in callee-saved registers
	// (R6-R9 survive helper calls). data/data_end are u32 fields at
	// offsets 0 and 4 of struct xdp_md; the verifier turns them into packet
	// pointers.
	add(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word),
		asm.LoadMem(asm.R8, asm.R6, 4, asm.Word),
	)

	// --- Configuration: r9 = psavd_cfg[0]. An array lookup cannot fail
	// for key 0, but the verifier insists on the NULL check; the default
	// then is fail-closed, routed.
	add(
		asm.StoreImm(asm.RFP, stCfgKey, 0, asm.Word), // *(u32 *)(fp-20) = 0
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapConfig),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stCfgKey),
		asm.FnMapLookupElem.Call(),
		asm.Mov.Imm(asm.R9, cfgFailClosed),
		asm.JEq.Imm(asm.R0, 0, "eth"),
		asm.LoadMem(asm.R9, asm.R0, 0, asm.Word), // r9 = flags
	)

	// --- Ethernet: a runt without a full header goes to the kernel, which
	// drops it. r5 = EtherType in host order (the 16-bit load reads network
	// order; "to big endian" is the same byte swap as "from big endian").
	// VLAN-tagged frames (802.1Q, 802.1ad) are out of scope for now: they
	// always go to the kernel.
	addAll(boundsCheck("eth", lenEth, "pass"))
	add(
		asm.LoadMem(asm.R5, asm.R7, offEthType, asm.Half),
		asm.HostTo(asm.BE, asm.R5, asm.Half),
		asm.JEq.Imm(asm.R5, ethIPv4, "ipv4"),
		asm.JEq.Imm(asm.R5, ethIPv6, "ipv6"),
		asm.JEq.Imm(asm.R5, ethARP, "arp"),
		asm.JEq.Imm(asm.R5, ethVLAN, "pass"),
		asm.JEq.Imm(asm.R5, ethQinQ, "pass"),
		asm.Ja.Label("nonip"),
	)

	// --- ARP: only Ethernet/IPv4 ARP with a complete header is looked at;
	// anything else is treated like any other non-IP frame. A request or
	// reply whose target protocol address is local goes to the kernel.
	addAll(boundsCheck("arp", endARP, "nonip"))
	add(
		asm.LoadMem(asm.R3, asm.R7, offARPPType, asm.Half),
		asm.HostTo(asm.BE, asm.R3, asm.Half),
		asm.JNE.Imm(asm.R3, ethIPv4, "nonip"), // protocol type must be IPv4
		asm.LoadMem(asm.R3, asm.R7, offARPHLen, asm.Byte),
		asm.JNE.Imm(asm.R3, 6, "nonip"), // hardware address length 6
		asm.LoadMem(asm.R3, asm.R7, offARPPLen, asm.Byte),
		asm.JNE.Imm(asm.R3, 4, "nonip"), // protocol address length 4
		// key = ::ffff:TPA
		asm.StoreImm(asm.RFP, stKey, 0, asm.Word),              // key[0:4] = 0
		asm.StoreImm(asm.RFP, stKey+4, 0, asm.Word),            // key[4:8] = 0
		asm.StoreImm(asm.RFP, stKey+8, v4mappedWord, asm.Word), // key[8:12] = 00 00 ff ff
		asm.LoadMem(asm.R3, asm.R7, offARPTPA, asm.Word),
		asm.StoreMem(asm.RFP, stKey+12, asm.R3, asm.Word), // key[12:16] = TPA
	)
	addAll(lookupLocal("pass"))
	add(asm.Ja.Label("nonip")) // not for us: like other non-IP frames

	// --- IPv4. A truncated header is data (the engine judges it; with
	// fail-closed it is not silently routed by the kernel).
	addAll(boundsCheck("ipv4", endIP4, "data"))
	add(
		// key = ::ffff:dst
		asm.StoreImm(asm.RFP, stKey, 0, asm.Word),
		asm.StoreImm(asm.RFP, stKey+4, 0, asm.Word),
		asm.StoreImm(asm.RFP, stKey+8, v4mappedWord, asm.Word),
		asm.LoadMem(asm.R3, asm.R7, offIP4Dst, asm.Word),
		asm.StoreMem(asm.RFP, stKey+12, asm.R3, asm.Word),
	)
	addAll(lookupLocal("ip4local"))
	add(asm.Ja.Label("pf4")) // transit: through the pre-filter (prefilter.go)
	add(
		// Transit. A cross-connect port forwards everything.
		asm.JSet.Imm(asm.R9, cfgCrossConnect, "data").WithSymbol("ip4fwd"),
		// Routed: multicast (224/4), the reserved 240/4 and the limited
		// broadcast 255.255.255.255 (first octet >= 224) go to the kernel.
		// (Subnet-directed broadcasts are not recognised: they are data.)
		asm.LoadMem(asm.R3, asm.R7, offIP4Dst, asm.Byte),
		asm.JGE.Imm(asm.R3, 224, "pass"),
		asm.Ja.Label("data"),
	)

	// IPv4 to a local address: the node's own traffic goes to the kernel,
	// except UDP to the LISP data port 4341. Fragments (MF set or offset
	// non-zero) go to the kernel whatever they carry, so that all fragments
	// of a packet take the same way.
	add(
		asm.LoadMem(asm.R3, asm.R7, offIP4Proto, asm.Byte).WithSymbol("ip4local"),
		asm.JNE.Imm(asm.R3, protoUDP, "pass"),
		asm.LoadMem(asm.R3, asm.R7, offIP4Frag, asm.Half),
		asm.HostTo(asm.BE, asm.R3, asm.Half),
		asm.JSet.Imm(asm.R3, 0x3FFF, "pass"), // MF flag or fragment offset
		// r3 = IHL*4, bounded to [20, 60] for the verifier.
		asm.LoadMem(asm.R3, asm.R7, offIP4VerIHL, asm.Byte),
		asm.And.Imm(asm.R3, 0x0F),
		asm.JLT.Imm(asm.R3, 5, "pass"), // malformed IHL: let the kernel drop it
		asm.LSh.Imm(asm.R3, 2),
		// r2 = start of the UDP header = data + 14 + IHL*4; need 4 bytes.
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, lenEth),
		asm.Add.Reg(asm.R2, asm.R3),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 4),
		asm.JGT.Reg(asm.R4, asm.R8, "pass"),      // truncated UDP header
		asm.LoadMem(asm.R3, asm.R2, 2, asm.Half), // UDP destination port
		asm.HostTo(asm.BE, asm.R3, asm.Half),
		asm.JNE.Imm(asm.R3, LISPDataPort, "pass"),
		// LISP data to us. LISP-Decent's unicast replication (I bit,
		// instance-ID 0xffffff) is a Map-Register for the push node's
		// data socket, not data for the engine: the kernel gets it.
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, 8+header.LISPDataHeaderLen),
		asm.JGT.Reg(asm.R4, asm.R8, "data"),      // too short to be one: data (the engine judges it)
		asm.LoadMem(asm.R3, asm.R2, 8, asm.Byte), // LISP flags
		asm.JSet.Imm(asm.R3, header.LISPFlagI, "lisp4iid"),
		asm.Ja.Label("data"),
		asm.LoadMem(asm.R3, asm.R2, 12, asm.Word).WithSymbol("lisp4iid"), // instance-ID ‖ LSBs
		asm.HostTo(asm.BE, asm.R3, asm.Word),
		asm.RSh.Imm(asm.R3, 8),
		asm.JEq.Imm(asm.R3, header.LISPDecentInstanceID, "pass"),
		asm.Ja.Label("data"),
	)

	// --- IPv6. A truncated header is data, as for IPv4.
	addAll(boundsCheck("ipv6", endIP6, "data"))
	add(
		// key = destination address (two 8-byte copies).
		asm.LoadMem(asm.R3, asm.R7, offIP6Dst, asm.DWord),
		asm.StoreMem(asm.RFP, stKey, asm.R3, asm.DWord),
		asm.LoadMem(asm.R3, asm.R7, offIP6Dst+8, asm.DWord),
		asm.StoreMem(asm.RFP, stKey+8, asm.R3, asm.DWord),
	)
	addAll(lookupLocal("ip6local"))
	add(
		// NDP? Only ICMPv6 directly after the IPv6 header is recognised
		// (NDP never carries extension headers).
		asm.LoadMem(asm.R3, asm.R7, offIP6Next, asm.Byte),
		asm.JNE.Imm(asm.R3, protoICMP6, "ip6transit"),
	)
	addAll(boundsCheck("", offIP6L4+1, "ip6transit"))
	add(
		asm.LoadMem(asm.R3, asm.R7, offIP6L4, asm.Byte), // ICMPv6 type
		asm.JLT.Imm(asm.R3, icmp6RS, "ip6transit"),
		asm.JGT.Imm(asm.R3, icmp6Redir, "ip6transit"),
		asm.JNE.Imm(asm.R3, icmp6NS, "ndother"),
	)
	// Neighbor Solicitation: a local target goes to the kernel (it answers).
	addAll(boundsCheck("", endNS, "ndother"))
	add(
		asm.LoadMem(asm.R3, asm.R7, offNSTarget, asm.DWord),
		asm.StoreMem(asm.RFP, stKey, asm.R3, asm.DWord),
		asm.LoadMem(asm.R3, asm.R7, offNSTarget+8, asm.DWord),
		asm.StoreMem(asm.RFP, stKey+8, asm.R3, asm.DWord),
	)
	addAll(lookupLocal("pass"))
	// Other NDP (and NS for someone else): a cross-connect port forwards
	// it (control fallback), a routed port leaves it to the kernel.
	add(
		asm.JSet.Imm(asm.R9, cfgCrossConnect, "ctl").WithSymbol("ndother"),
		asm.Ja.Label("pass"),
	)
	// IPv6 transit: through the pre-filter ("ip6transit" is its entry),
	// then routed ports leave multicast (ff00::/8) to the kernel.
	add(
		asm.JSet.Imm(asm.R9, cfgCrossConnect, "data").WithSymbol("ip6fwd"),
		asm.LoadMem(asm.R3, asm.R7, offIP6Dst, asm.Byte),
		asm.JEq.Imm(asm.R3, 0xFF, "pass"),
		asm.Ja.Label("data"),
	)
	// IPv6 to a local address: kernel, except UDP (directly after the
	// header) to the LISP data port.
	add(
		asm.LoadMem(asm.R3, asm.R7, offIP6Next, asm.Byte).WithSymbol("ip6local"),
		asm.JNE.Imm(asm.R3, protoUDP, "pass"),
	)
	addAll(boundsCheck("", endIP6UDPHeader, "pass"))
	add(
		asm.LoadMem(asm.R3, asm.R7, offIP6UDPDst, asm.Half),
		asm.HostTo(asm.BE, asm.R3, asm.Half),
		asm.JNE.Imm(asm.R3, LISPDataPort, "pass"),
	)
	// LISP-Decent replication to us goes to the kernel (see IPv4).
	addAll(boundsCheck("", endIP6UDPHeader+header.LISPDataHeaderLen, "data"))
	add(
		asm.LoadMem(asm.R3, asm.R7, endIP6UDPHeader, asm.Byte),
		asm.JSet.Imm(asm.R3, header.LISPFlagI, "lisp6iid"),
		asm.Ja.Label("data"),
		asm.LoadMem(asm.R3, asm.R7, endIP6UDPHeader+4, asm.Word).WithSymbol("lisp6iid"),
		asm.HostTo(asm.BE, asm.R3, asm.Word),
		asm.RSh.Imm(asm.R3, 8),
		asm.JEq.Imm(asm.R3, header.LISPDecentInstanceID, "pass"),
		asm.Ja.Label("data"),
	)

	// --- Other non-IP frames: the socket on a cross-connect port (with
	// XDP_PASS when no socket is registered), the kernel otherwise.
	add(
		asm.JSet.Imm(asm.R9, cfgCrossConnect, "ctl").WithSymbol("nonip"),
		asm.Ja.Label("pass"),
	)

	// --- The pre-filter (prefilter.go): ends in "data", "ip4fwd",
	// "ip6fwd" or returns XDP_DROP.
	addAll(prefilterInstructions())

	// --- Exits.
	// ctl: r3 = fallback action XDP_PASS, then redirect.
	add(
		asm.Mov.Imm(asm.R3, xdpPass).WithSymbol("ctl"),
		asm.Ja.Label("redirect"),
	)
	// data: fallback XDP_DROP when fail-closed, else XDP_PASS.
	add(
		asm.Mov.Imm(asm.R3, xdpPass).WithSymbol("data"),
		asm.JSet.Imm(asm.R9, cfgFailClosed, "dropfallback"),
		asm.Ja.Label("redirect"),
		asm.Mov.Imm(asm.R3, xdpDrop).WithSymbol("dropfallback"),
	)
	// redirect: return bpf_redirect_map(&psavd_xsks, ctx->rx_queue_index,
	// r3). The lower bits of the flags argument are the action returned
	// when the queue has no socket in the map.
	add(
		asm.LoadMapPtr(asm.R1, 0).WithReference(mapXSKs).WithSymbol("redirect"),
		asm.LoadMem(asm.R2, asm.R6, 16, asm.Word), // rx_queue_index
		asm.FnRedirectMap.Call(),
		asm.Return(),
	)
	// pass: hand the frame to the kernel stack.
	add(
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	)
	return p
}

// programDescription is used in error messages.
func programDescription(info *ebpf.ProgramInfo) string {
	if info == nil {
		return "unknown program"
	}
	id, _ := info.ID()
	return fmt.Sprintf("%q (id %d)", info.Name, id)
}
