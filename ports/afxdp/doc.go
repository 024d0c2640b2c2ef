// Package afxdp implements ports.Port on AF_XDP sockets (github.com/asavie/xdp)
// with psavd's own XDP program, written in BPF assembly with
// github.com/cilium/ebpf/asm (no C compiler is needed to build it).
//
// # Use
//
//	iface, err := afxdp.OpenInterface("eth0", afxdp.Options{})  // loads + attaches the program
//	port, err := iface.OpenQueue("wan0", 0)                    // one socket per (interface, queue)
//	...
//	iface.Close()                                              // closes the ports, detaches
//
// OpenInterface, OpenQueue and RefreshLocalAddrs must run in the network
// namespace of the interface. Open a port on each of iface.Queues(): IP data
// arriving on a queue without a socket is dropped (fail-closed) unless
// Options.FailOpen is set.
//
// # The XDP program
//
// Maps: psavd_xsks (XSKMAP, rx queue index → socket), psavd_local (hash of
// the node's own addresses as 16-byte keys, IPv4 as ::ffff:a.b.c.d) and
// psavd_cfg (array of one u32: cross-connect and fail-closed flags). In
// order, for a frame arriving on queue q:
//
//   - IPv4/IPv6 to a local address → kernel (XDP_PASS), except UDP to port
//     4341 (LISP data) → socket, but LISP-Decent's unicast replication
//     (I bit, instance-ID 0xffffff) → kernel, the push node's data socket.
//     IPv4 fragments and IPv6 with extension headers to a local address
//     go to the kernel.
//   - ARP whose target protocol address is local → kernel; other ARP →
//     socket on a cross-connect port, kernel on a routed port.
//   - NDP (ICMPv6 133–137 directly after the IPv6 header): Neighbor
//     Solicitation for a local target → kernel; other NDP → socket on a
//     cross-connect port, kernel on a routed port.
//   - Routed ports: IPv4 destinations ≥ 224.0.0.0 (multicast, class E,
//     broadcast) and IPv6 ff00::/8 → kernel.
//   - VLAN-tagged frames (802.1Q, 802.1ad) → kernel (out of scope for now).
//   - Other non-IP frames → socket on a cross-connect port, kernel on a
//     routed port.
//   - All other IPv4/IPv6 (data) → socket.
//
// "Socket" is bpf_redirect_map(psavd_xsks, q, fallback): the fallback, used
// while q has no socket, is XDP_PASS for non-IP frames and XDP_DROP for IP
// data (XDP_PASS with Options.FailOpen).
//
// # Frames and rings
//
// Each socket has its own UMEM of Options.Frames frames: the first half is
// the RX pool, the second half the TX pool. Receive hands out whole UMEM
// frames (Packet.Buf) with the data at Packet.Off = 256 (the kernel's
// XDP_PACKET_HEADROOM; at least ports.Headroom, checked per packet);
// Release puts the same frames back on the fill ring. Transmit copies frames
// into the TX pool, used as a FIFO ring because asavie's Complete does not
// return the completed addresses. See README.md for the asavie pitfalls this
// package works around.
package afxdp
