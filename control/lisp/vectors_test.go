package lisp

import (
	"encoding/hex"
	"net/netip"
	"strings"
)

// hx decodes a hex vector written field by field: whitespace is ignored.
func hx(parts ...string) []byte {
	s := strings.Join(strings.Fields(strings.Join(parts, " ")), "")
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

var (
	ip = netip.MustParseAddr
	ap = netip.MustParseAddrPort
)

// The vectors below are written by hand from the layouts in RFC 9301 §5 and
// RFC 8060, one field per line; nothing here comes from the encoder.

// LCAF vectors (RFC 8060). Header: AFI=16387 (0x4003), Rsvd1, Flags, Type,
// Rsvd2, Length (octets after the Length field).
var lcafVectors = []struct {
	name string
	wire []byte
	addr Address
}{
	{"afi-list", hx(
		"4003 00 00",                            // AFI=LCAF, Rsvd1, Flags
		"01 00 0018",                            // Type=1 AFI List, Rsvd2, Length=24
		"0001 c0000201",                         // AFI=1 192.0.2.1
		"0002 20010db8000000000000000000000001", // AFI=2 2001:db8::1
	), AFIListAddr(IPAddr(ip("192.0.2.1")), IPAddr(ip("2001:db8::1")))},
	{"instance-id", hx(
		"4003 00 00",
		"02 08 000a",    // Type=2 Instance ID, IID mask-len=8, Length=10
		"0000002a",      // Instance ID=42
		"0001 0a010000", // AFI=1 10.1.0.0
	), InstanceIDAddr(42, 8, IPAddr(ip("10.1.0.0")))},
	{"as-number", hx(
		"4003 00 00",
		"03 00 000a", // Type=3 AS Number, Rsvd2, Length=10
		"0000fc00",   // AS Number=64512
		"0001 0a010000",
	), ASNAddr(64512, IPAddr(ip("10.1.0.0")))},
	{"multicast-info", hx(
		"4003 00 00",
		"09 01 0014",    // Type=9 Multicast Info, Rsvd2=R0 L0 J1, Length=20
		"00000000",      // Instance-ID=0
		"0000 20 20",    // Reserved, Source MaskLen=32, Group MaskLen=32
		"0001 0a000001", // Source 10.0.0.1
		"0001 e0010101", // Group 224.1.1.1
	), Address{LCAF: &LCAF{Type: LCAFMulticastInfo, MCFlags: MCFlagJoin, SourceMaskLen: 32, GroupMaskLen: 32,
		Source: IPAddr(ip("10.0.0.1")), Group: IPAddr(ip("224.1.1.1"))}}},
	{"rle", hx(
		"4003 00 00",
		"0d 00 0014", // Type=13 Replication List Entry, Rsvd2, Length=20
		"0000 00 00", // Rsvd3, Rsvd4, Level Value=0
		"0001 c0000201",
		"0000 00 01", // Rsvd3, Rsvd4, Level Value=1
		"0001 c0000202",
	), RLEAddr(RLEEntry{0, IPAddr(ip("192.0.2.1"))}, RLEEntry{1, IPAddr(ip("192.0.2.2"))})},
	{"iid-asn-nested", hx(
		"4003 00 00",
		"02 00 0016", // Instance ID, mask-len 0, Length=4+18
		"00000007",
		"4003 00 00", // inner LCAF
		"03 00 000a", // AS Number, Length=10
		"0000fde8",   // AS 65000
		"0001 0a020000",
	), InstanceIDAddr(7, 0, ASNAddr(65000, IPAddr(ip("10.2.0.0"))))},
	{"opaque-geo", hx(
		"4003 00 00",
		"05 00 0004", // Type=5 (Geo), kept opaque, Length=4
		"deadbeef",
	), Address{LCAF: &LCAF{Type: 5, Body: []byte{0xde, 0xad, 0xbe, 0xef}}}},
}

// Shared pieces of the message vectors.
const (
	nonce1 = "0102030405060708"
	// Map-Request of vector map-request-ipv4, also the inner message of the ECMs.
	mreqIPv4 = "10 00 00 01" + // Type=1, A M P S p s = 0, reserved, IRC=0 (1 ITR-RLOC), Record Count=1
		nonce1 +
		"0001 0a000001" + // Source-EID-AFI=1, 10.0.0.1
		"0001 c0000201" + // ITR-RLOC-AFI=1, 192.0.2.1
		"00 18 0001 0a010200" // Rec: Reserved, EID mask-len=24, EID-Prefix-AFI=1, 10.1.2.0
	// Mapping record: TTL, Locator Count, EID mask-len, ACT|A|Reserved,
	// Rsvd|Map-Version, EID-Prefix-AFI, EID-Prefix; then locators:
	// Priority, Weight, M Priority, M Weight, Unused Flags|L|p|R, Loc-AFI, Locator.
	asnRecord = "000005a0" + // TTL=1440
		"01 10 0000" + // Locator Count=1, EID mask-len=16, ACT=0 A=0
		"0000" + // Map-Version=0
		"4003 00 00 03 00 000a 0000fc00 0001 0a010000" + // EID AS 64512 : 10.1.0.0
		"01 64 ff 00 0005 0001 c0000201" // prio 1 weight 100 mprio 255 mweight 0, L=1 R=1, 192.0.2.1
)

func asnRecordValue() MappingRecord {
	return MappingRecord{TTL: 1440, EIDMaskLen: 16, EID: ASNAddr(64512, IPAddr(ip("10.1.0.0"))),
		Locators: []Locator{{Priority: 1, Weight: 100, MPriority: 255, Local: true, Reachable: true, Address: IPAddr(ip("192.0.2.1"))}}}
}

func mreqIPv4Value() *MapRequest {
	return &MapRequest{Nonce: 0x0102030405060708, SourceEID: IPAddr(ip("10.0.0.1")),
		ITRRLOCs: []Address{IPAddr(ip("192.0.2.1"))},
		Records:  []EIDRecord{{MaskLen: 24, EID: IPAddr(ip("10.1.2.0"))}}}
}

var xtrID = [16]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}

var msgVectors = []struct {
	name string
	wire []byte
	msg  Message
}{
	{"map-request-ipv4", hx(mreqIPv4), mreqIPv4Value()},
	{"map-request-smr-iid-mapreply", hx(
		"15 00 01 01", // Type=1, M=1 S=1, IRC=1 (2 ITR-RLOCs), Record Count=1
		nonce1,
		"4003 00 00 02 00 000a 00000007 0001 0a000001", // Source EID: IID 7, 10.0.0.1
		"0001 c0000201",                                      // ITR-RLOC 192.0.2.1
		"0002 20010db8000000000000000000000001",              // ITR-RLOC 2001:db8::1
		"00 18 4003 00 00 02 00 000a 00000007 0001 0a010200", // Rec: mask 24, IID 7 : 10.1.2.0
		// Map-Reply record (M bit):
		"000005a0",   // TTL 1440
		"01 18 1000", // Locator Count=1, mask 24, ACT=0 A=1
		"0000",       // Map-Version 0
		"0001 0a010200",
		"01 64 ff 00 0005 0001 c0000201",
	), &MapRequest{SMR: true, Nonce: 0x0102030405060708,
		SourceEID: InstanceIDAddr(7, 0, IPAddr(ip("10.0.0.1"))),
		ITRRLOCs:  []Address{IPAddr(ip("192.0.2.1")), IPAddr(ip("2001:db8::1"))},
		Records:   []EIDRecord{{MaskLen: 24, EID: InstanceIDAddr(7, 0, IPAddr(ip("10.1.2.0")))}},
		MapReply: &MappingRecord{TTL: 1440, EIDMaskLen: 24, Authoritative: true, EID: IPAddr(ip("10.1.2.0")),
			Locators: []Locator{{Priority: 1, Weight: 100, MPriority: 255, Local: true, Reachable: true, Address: IPAddr(ip("192.0.2.1"))}}},
	}},
	{"map-request-probe-pitr", hx(
		"12 80 00 01", // Type=1, P=1 (bit 6), p=1 (bit 8); A M S s = 0
		nonce1,
		"0000",          // Source-EID-AFI=0 (no source EID)
		"0001 c0000201", // ITR-RLOC
		"00 20 0001 0a010203",
	), &MapRequest{Probe: true, PITR: true, Nonce: 0x0102030405060708,
		ITRRLOCs: []Address{IPAddr(ip("192.0.2.1"))},
		Records:  []EIDRecord{{MaskLen: 32, EID: IPAddr(ip("10.1.2.3"))}}}},
	{"map-reply", hx(
		"20 00 00 02", // Type=2, P E S = 0, Record Count=2
		nonce1,
		"000005a0",   // Rec 1: TTL 1440
		"02 18 1000", // Locator Count=2, mask 24, ACT=0 A=1
		"0001",       // Map-Version=1
		"0001 0a010200",
		"01 64 ff 00 0005 0001 c0000201", // L=1 R=1
		"02 32 ff 00 0001 0002 20010db8000000000000000000000002", // R=1, 2001:db8::2
		"0000000f",   // Rec 2 (negative): TTL 15
		"00 10 4000", // Locator Count=0, mask 16, ACT=2 Send-Map-Request
		"0000",
		"0001 0a020000",
	), &MapReply{Nonce: 0x0102030405060708, Records: []MappingRecord{
		{TTL: 1440, EIDMaskLen: 24, Authoritative: true, MapVersion: 1, EID: IPAddr(ip("10.1.2.0")),
			Locators: []Locator{
				{Priority: 1, Weight: 100, MPriority: 255, Local: true, Reachable: true, Address: IPAddr(ip("192.0.2.1"))},
				{Priority: 2, Weight: 50, MPriority: 255, Reachable: true, Address: IPAddr(ip("2001:db8::2"))}}},
		{TTL: 15, EIDMaskLen: 16, Action: ActionSendMapRequest, EID: IPAddr(ip("10.2.0.0"))},
	}}},
	{"map-reply-probe-lcafs", hx(
		"2c 00 00 01", // Type=2, P=1 E=1, Record Count=1
		nonce1,
		"0000003c",   // TTL 60
		"02 00 0000", // Locator Count=2, mask 0, ACT=0
		"0000",
		"4003 00 00 09 01 0014 00000000 0000 20 20 0001 0a000001 0001 e0010101", // EID: Multicast Info (10.0.0.1/32, 224.1.1.1/32) J
		"01 64 ff 00 0001", // locator 1: R=1
		"4003 00 00 0d 00 0014 0000 00 00 0001 c0000201 0000 00 01 0001 c0000202", // RLE level 0 192.0.2.1, level 1 192.0.2.2
		"01 64 ff 00 0003", // locator 2: p=1 R=1
		"4003 00 00 01 00 0018 0001 c0000201 0002 20010db8000000000000000000000001", // AFI list
	), &MapReply{Probe: true, EchoNonce: true, Nonce: 0x0102030405060708, Records: []MappingRecord{{
		TTL: 60, EID: lcafVectors[3].addr,
		Locators: []Locator{
			{Priority: 1, Weight: 100, MPriority: 255, Reachable: true, Address: lcafVectors[4].addr},
			{Priority: 1, Weight: 100, MPriority: 255, Probed: true, Reachable: true, Address: lcafVectors[0].addr},
		}}}}},
	{"map-register-asn", hx(
		"38 00 01 01", // Type=3, P=1 S=0 I=0 R=0, reserved, M=1 (bit 23), Record Count=1
		nonce1,
		"0001 000c", // Key ID=1 HMAC-SHA-1-96, Authentication Data Length=12
		"000000000000000000000000",
		asnRecord,
	), &MapRegister{ProxyReply: true, WantMapNotify: true, Nonce: 0x0102030405060708, KeyID: 1,
		AuthData: make([]byte, 12), Records: []MappingRecord{asnRecordValue()}}},
	{"map-register-xtrid-iid6", hx(
		"32 00 01 01", // Type=3, I=1, M=1, Record Count=1
		"1122334455667788",
		"0002 0010", // Key ID=2 HMAC-SHA-256-128, Length=16
		"00000000000000000000000000000000",
		"000005a0",
		"01 30 0000", // Locator Count=1, mask 48
		"0000",
		"4003 00 00 02 08 0016 0000002a 0002 20010db8000100000000000000000000", // IID 42 (mask-len 8) : 2001:db8:1::
		"01 64 00 00 0005 0002 20010db8000000000000000000000001",
		"000102030405060708090a0b0c0d0e0f", // xTR-ID
		"0000000000000007",                 // site-ID
	), &MapRegister{WantMapNotify: true, Nonce: 0x1122334455667788, KeyID: 2, AuthData: make([]byte, 16),
		Records: []MappingRecord{{TTL: 1440, EIDMaskLen: 48, EID: InstanceIDAddr(42, 8, IPAddr(ip("2001:db8:1::"))),
			Locators: []Locator{{Priority: 1, Weight: 100, Local: true, Reachable: true, Address: IPAddr(ip("2001:db8::1"))}}}},
		XTR: &XTRInfo{XTRID: xtrID, SiteID: 7}}},
	{"map-notify", hx(
		"40 00 00 01", // Type=4, Record Count=1
		nonce1,
		"0001 000c",
		"000000000000000000000000",
		asnRecord,
	), &MapNotify{Nonce: 0x0102030405060708, KeyID: 1, AuthData: make([]byte, 12), Records: []MappingRecord{asnRecordValue()}}},
	{"map-notify-xtrid", hx(
		"48 00 00 01", // Type=4, I=1, Record Count=1
		nonce1,
		"0001 000c",
		"000000000000000000000000",
		asnRecord,
		"000102030405060708090a0b0c0d0e0f",
		"0000000000000007",
	), &MapNotify{Nonce: 0x0102030405060708, KeyID: 1, AuthData: make([]byte, 12), Records: []MappingRecord{asnRecordValue()},
		XTR: &XTRInfo{XTRID: xtrID, SiteID: 7}}},
	{"map-notify-ack", hx(
		"50 00 00 01", // Type=5, Record Count=1
		nonce1,
		"0001 000c",
		"000000000000000000000000",
		asnRecord,
	), &MapNotifyAck{Nonce: 0x0102030405060708, KeyID: 1, AuthData: make([]byte, 12), Records: []MappingRecord{asnRecordValue()}}},
	{"ecm-ipv4", hx(
		"80 00 00 00",         // Type=8, S D E M = 0, Reserved
		"45 00 003c",          // IPv4, IHL 5, TOS 0, Total Length 60
		"0000 0000",           // ID 0, flags/fragment 0
		"40 11 64ad",          // TTL 64, protocol UDP, header checksum
		"0a000001 0a010203",   // 10.0.0.1 -> 10.1.2.3
		"c350 10f6 0028 1d1f", // UDP 50000 -> 4342, length 40, checksum
		mreqIPv4,
	), &ECM{Inner: InnerHeader{Source: ap("10.0.0.1:50000"), Destination: ap("10.1.2.3:4342"), TTL: 64},
		Message: mreqIPv4Value()}},
	{"ecm-ipv6-security", hx(
		"88 00 00 00",                      // Type=8, S=1
		"60000000",                         // IPv6, traffic class 0, flow label 0
		"0028 11 40",                       // Payload Length 40, Next Header UDP, Hop Limit 64
		"20010db8000000000000000000000001", // 2001:db8::1
		"20010db8000100000000000000000003", // 2001:db8:1::3
		"c350 10f6 0028 d7ac",              // UDP 50000 -> 4342, length 40, checksum
		mreqIPv4,
	), &ECM{Security: true, Inner: InnerHeader{Source: ap("[2001:db8::1]:50000"), Destination: ap("[2001:db8:1::3]:4342"), TTL: 64},
		Message: mreqIPv4Value()}},
}
