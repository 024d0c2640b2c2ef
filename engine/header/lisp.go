package header

// The LISP data plane's wire constants (RFC 9300 §5.1; LISP-Decent,
// docs/wire.md §3.4), shared by everything that reads or writes the
// 8-octet LISP data header: the engine's encapsulation and decapsulation,
// the XDP program that tells LISP data from the push node's replication,
// the control plane's data-header codec.
const (
	LISPDataPort      = 4341 // UDP port of LISP data
	LISPDataHeaderLen = 8
	LISPFlagN         = 0x80 // nonce present
	LISPFlagI         = 0x08 // instance-ID present
	// LISPDecentInstanceID is the instance-ID of a Map-Register
	// LISP-encapsulated to a member of a LISP-Decent registration group
	// (unicast replication): for the member's push node, not its data plane.
	LISPDecentInstanceID = 0xffffff
)
