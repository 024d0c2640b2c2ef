package lisp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Type is the 4-bit LISP control message type.
type Type uint8

// Control message types (RFC 9301 §5.1).
const (
	TypeMapRequest   Type = 1
	TypeMapReply     Type = 2
	TypeMapRegister  Type = 3
	TypeMapNotify    Type = 4
	TypeMapNotifyAck Type = 5
	TypeECM          Type = 8
)

func (t Type) String() string {
	switch t {
	case TypeMapRequest:
		return "Map-Request"
	case TypeMapReply:
		return "Map-Reply"
	case TypeMapRegister:
		return "Map-Register"
	case TypeMapNotify:
		return "Map-Notify"
	case TypeMapNotifyAck:
		return "Map-Notify-Ack"
	case TypeECM:
		return "Encapsulated-Control-Message"
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// Message is a LISP control message.
type Message interface {
	Type() Type
	// Append appends the wire encoding of the message to b.
	Append(b []byte) ([]byte, error)
}

// Marshal returns the wire encoding of m.
func Marshal(m Message) ([]byte, error) { return m.Append(nil) }

// MaxITRRLOCs is the largest ITR-RLOC list a Map-Request can carry (IRC is
// five bits and encodes count-1).
const MaxITRRLOCs = 32

// MapRequest is a Map-Request (type 1). The M bit is set exactly when
// MapReply is non-nil; IRC and Record Count come from the slice lengths.
type MapRequest struct {
	Authoritative bool // A
	Probe         bool // P: RLOC-probe
	SMR           bool // S: solicit-Map-Request
	PITR          bool // p: sent by a PITR
	SMRInvoked    bool // s: sent in answer to an SMR
	LocalXTR      bool // L: local-xtr bit (RFC 9301)
	DontMapReply  bool // D: dont-map-reply bit (RFC 9301)
	Nonce         uint64
	SourceEID     Address
	ITRRLOCs      []Address // 1..32
	Records       []EIDRecord
	MapReply      *MappingRecord
}

// ITRRLOCFor is where a reply to this request goes when the request reached
// us from an address of from's family (RFC 9301 §5.3: an ITR-RLOC the
// replier can reach): the first IP ITR-RLOC of that family, else the first
// IP ITR-RLOC at all; ok is false when the request names none.
func (m *MapRequest) ITRRLOCFor(from netip.Addr) (netip.Addr, bool) {
	var first netip.Addr
	for _, r := range m.ITRRLOCs {
		ip := r.IP.Unmap()
		if !ip.IsValid() {
			continue
		}
		if ip.Is4() == from.Unmap().Is4() {
			return ip, true
		}
		if !first.IsValid() {
			first = ip
		}
	}
	return first, first.IsValid()
}

// Type implements Message.
func (*MapRequest) Type() Type { return TypeMapRequest }

// Append implements Message.
func (m *MapRequest) Append(b []byte) ([]byte, error) {
	if len(m.ITRRLOCs) < 1 || len(m.ITRRLOCs) > MaxITRRLOCs {
		return b, fmt.Errorf("%w: Map-Request with %d ITR-RLOCs", ErrInvalid, len(m.ITRRLOCs))
	}
	if len(m.Records) < 1 || len(m.Records) > 255 {
		return b, fmt.Errorf("%w: Map-Request with %d records", ErrInvalid, len(m.Records))
	}
	w := uint32(TypeMapRequest)<<28 | uint32(len(m.ITRRLOCs)-1)<<8 | uint32(len(m.Records))
	w |= flag(m.Authoritative, 27) | flag(m.MapReply != nil, 26) | flag(m.Probe, 25) | flag(m.SMR, 24) |
		flag(m.PITR, 23) | flag(m.SMRInvoked, 22) | flag(m.LocalXTR, 14) | flag(m.DontMapReply, 13)
	b = binary.BigEndian.AppendUint32(b, w)
	b = binary.BigEndian.AppendUint64(b, m.Nonce)
	var err error
	if b, err = appendAddress(b, m.SourceEID, 0); err != nil {
		return b, err
	}
	for _, a := range m.ITRRLOCs {
		if b, err = appendAddress(b, a, 0); err != nil {
			return b, err
		}
	}
	for i := range m.Records {
		if b, err = appendEIDRecord(b, &m.Records[i]); err != nil {
			return b, err
		}
	}
	if m.MapReply != nil {
		b, err = AppendMappingRecord(b, m.MapReply)
	}
	return b, err
}

// MapReply is a Map-Reply (type 2).
type MapReply struct {
	Probe     bool // P
	EchoNonce bool // E
	Security  bool // S
	Nonce     uint64
	Records   []MappingRecord
}

// Type implements Message.
func (*MapReply) Type() Type { return TypeMapReply }

// Append implements Message.
func (m *MapReply) Append(b []byte) ([]byte, error) {
	if len(m.Records) > 255 {
		return b, fmt.Errorf("%w: %d records", ErrInvalid, len(m.Records))
	}
	w := uint32(TypeMapReply)<<28 | uint32(len(m.Records)) |
		flag(m.Probe, 27) | flag(m.EchoNonce, 26) | flag(m.Security, 25)
	b = binary.BigEndian.AppendUint32(b, w)
	b = binary.BigEndian.AppendUint64(b, m.Nonce)
	return appendRecords(b, m.Records)
}

// XTRInfo is the xTR-ID and site-ID that trail a Map-Register (or
// Map-Notify) with the I bit set.
type XTRInfo struct {
	XTRID  [16]byte
	SiteID uint64
}

// MapRegister is a Map-Register (type 3). The I bit is set exactly when XTR
// is non-nil. AuthData is sent as is; use SignedMarshal or Sign to fill it.
type MapRegister struct {
	ProxyReply    bool // P: the Map-Server answers Map-Requests for the ETR
	Security      bool // S: LISP-SEC capable
	ForRTR        bool // R: built for an RTR (NAT traversal)
	WantMapNotify bool // M
	Nonce         uint64
	KeyID         uint16
	AuthData      []byte
	Records       []MappingRecord
	XTR           *XTRInfo
}

// Type implements Message.
func (*MapRegister) Type() Type { return TypeMapRegister }

// Append implements Message.
func (m *MapRegister) Append(b []byte) ([]byte, error) {
	flags := flag(m.ProxyReply, 27) | flag(m.Security, 26) | flag(m.XTR != nil, 25) |
		flag(m.ForRTR, 24) | flag(m.WantMapNotify, 8)
	return appendRegLike(b, TypeMapRegister, flags, m.Nonce, m.KeyID, m.AuthData, m.Records, m.XTR)
}

// MapNotify is a Map-Notify (type 4): the Map-Register layout with the I
// (xTR-ID present) and R (built for an RTR) flags at bits 4 and 5, as
// decoded by Wireshark and sent by lispers.net.
type MapNotify struct {
	ForRTR   bool
	Nonce    uint64
	KeyID    uint16
	AuthData []byte
	Records  []MappingRecord
	XTR      *XTRInfo
}

// Type implements Message.
func (*MapNotify) Type() Type { return TypeMapNotify }

// Append implements Message.
func (m *MapNotify) Append(b []byte) ([]byte, error) {
	return appendRegLike(b, TypeMapNotify, flag(m.XTR != nil, 27)|flag(m.ForRTR, 26), m.Nonce, m.KeyID, m.AuthData, m.Records, m.XTR)
}

// AppendNotifyFor appends to b the Map-Notify that answers the decoded
// Map-Register m — RFC 9301 §5.7's fields copied from it: nonce, key field,
// authentication data length, records, xTR-ID and site-ID — with the
// authentication data zeroed, for the caller to sign. records is m.Records
// encoded, AppendMappingRecord of each in order: a Map-Server has them
// encoded already for its table, and they are not encoded twice. The
// result is MapNotify{Nonce, KeyID, AuthData: zeros, Records, XTR}.Append's
// (TestAppendNotifyFor). The Map-Register's own octets are not copied: a
// reserved bit the ETR set would go back out, where RFC 9301 wants zeros.
func AppendNotifyFor(b []byte, m *MapRegister, records []byte) ([]byte, error) {
	b, err := appendRegHeader(b, TypeMapNotify, flag(m.XTR != nil, 27), len(m.Records), m.Nonce, m.KeyID, len(m.AuthData))
	if err != nil {
		return b, err
	}
	return appendXTR(append(b, records...), m.XTR), nil
}

// MapNotifyAck is a Map-Notify-Ack (type 5), laid out like a Map-Notify.
type MapNotifyAck MapNotify

// Type implements Message.
func (*MapNotifyAck) Type() Type { return TypeMapNotifyAck }

// Append implements Message.
func (m *MapNotifyAck) Append(b []byte) ([]byte, error) {
	return appendRegLike(b, TypeMapNotifyAck, flag(m.XTR != nil, 27)|flag(m.ForRTR, 26), m.Nonce, m.KeyID, m.AuthData, m.Records, m.XTR)
}

// ECM is an Encapsulated Control Message (type 8): a 4-octet LISP header,
// an inner IPv4 or IPv6 header, a UDP header and an inner control message.
type ECM struct {
	Security bool // S: LISP-SEC
	DDT      bool // D: DDT-originated
	ToETR    bool // E: to-ETR
	ToMS     bool // M: to-MS
	Inner    InnerHeader
	Message  Message // any type but ECM
}

// Type implements Message.
func (*ECM) Type() Type { return TypeECM }

// Append implements Message.
func (m *ECM) Append(b []byte) ([]byte, error) {
	if m.Message == nil {
		return b, fmt.Errorf("%w: ECM without inner message", ErrInvalid)
	}
	if m.Message.Type() == TypeECM {
		return b, fmt.Errorf("%w: ECM inside ECM", ErrInvalid)
	}
	inner, err := m.Message.Append(nil)
	if err != nil {
		return b, err
	}
	w := uint32(TypeECM)<<28 | flag(m.Security, 27) | flag(m.DDT, 26) | flag(m.ToETR, 25) | flag(m.ToMS, 24)
	b = binary.BigEndian.AppendUint32(b, w)
	return AppendInnerIPUDP(b, m.Inner, inner)
}

func flag(v bool, bit uint) uint32 {
	if v {
		return 1 << bit
	}
	return 0
}

func appendRecords(b []byte, recs []MappingRecord) ([]byte, error) {
	var err error
	for i := range recs {
		if b, err = AppendMappingRecord(b, &recs[i]); err != nil {
			return b, err
		}
	}
	return b, nil
}

// Offsets of the authentication fields shared by Map-Register, Map-Notify
// and Map-Notify-Ack.
const (
	offKeyID    = 12
	offAuthLen  = 14
	offAuthData = 16
)

func appendRegLike(b []byte, t Type, flags uint32, nonce uint64, keyID uint16, auth []byte, recs []MappingRecord, x *XTRInfo) ([]byte, error) {
	start := len(b)
	b, err := appendRegHeader(b, t, flags, len(recs), nonce, keyID, len(auth))
	if err != nil {
		return b, err
	}
	copy(b[start+16:], auth)
	if b, err = appendRecords(b, recs); err != nil {
		return b, err
	}
	return appendXTR(b, x), nil
}

// appendRegHeader appends the header shared by Map-Register, Map-Notify
// and Map-Notify-Ack, with authLen zero octets of authentication data.
func appendRegHeader(b []byte, t Type, flags uint32, records int, nonce uint64, keyID uint16, authLen int) ([]byte, error) {
	if records > 255 {
		return b, fmt.Errorf("%w: %d records", ErrInvalid, records)
	}
	if authLen > 0xffff {
		return b, fmt.Errorf("%w: %d octets of authentication data", ErrInvalid, authLen)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(t)<<28|flags|uint32(records))
	b = binary.BigEndian.AppendUint64(b, nonce)
	b = binary.BigEndian.AppendUint16(b, keyID)
	b = binary.BigEndian.AppendUint16(b, uint16(authLen))
	return append(b, make([]byte, authLen)...), nil
}

// appendXTR appends the xTR-ID and site-ID trailer, if x is set.
func appendXTR(b []byte, x *XTRInfo) []byte {
	if x != nil {
		b = append(b, x.XTRID[:]...)
		b = binary.BigEndian.AppendUint64(b, x.SiteID)
	}
	return b
}

// Parse decodes one LISP control message that fills b exactly.
func Parse(b []byte) (Message, error) {
	return parse(b, true)
}

func parse(b []byte, allowECM bool) (Message, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: %d octets", ErrTruncated, len(b))
	}
	r := reader{b: b}
	w := r.u32()
	var m Message
	switch t := Type(w >> 28); t {
	case TypeMapRequest:
		m = r.mapRequest(w)
	case TypeMapReply:
		m = r.mapReply(w)
	case TypeMapRegister:
		var x *MapRegister
		x, r.err = parseRegister(&r, w)
		m = x
	case TypeMapNotify, TypeMapNotifyAck:
		n := &MapNotify{ForRTR: w&(1<<26) != 0}
		n.Nonce, n.KeyID, n.AuthData, n.Records, n.XTR = r.regBody(w, w&(1<<27) != 0)
		if t == TypeMapNotifyAck {
			m = (*MapNotifyAck)(n)
		} else {
			m = n
		}
	case TypeECM:
		if !allowECM {
			return nil, fmt.Errorf("%w: ECM inside ECM", ErrMalformed)
		}
		e := &ECM{Security: w&(1<<27) != 0, DDT: w&(1<<26) != 0, ToETR: w&(1<<25) != 0, ToMS: w&(1<<24) != 0}
		hdr, payload, err := ParseInnerIPUDP(b[4:])
		if err != nil {
			return nil, fmt.Errorf("ECM: %w", err)
		}
		e.Inner = hdr
		if e.Message, err = parse(payload, false); err != nil {
			return nil, fmt.Errorf("ECM inner message: %w", err)
		}
		return e, nil
	default:
		return nil, fmt.Errorf("%w: %d", ErrUnknownType, t)
	}
	r.end()
	if r.err != nil {
		return nil, fmt.Errorf("%v: %w", Type(w>>28), r.err)
	}
	return m, nil
}

func parseRegister(r *reader, w uint32) (*MapRegister, error) {
	m := &MapRegister{}
	r.register(w, m)
	return m, r.err
}

// register decodes a Map-Register whose first word was w into m.
func (r *reader) register(w uint32, m *MapRegister) {
	*m = MapRegister{
		ProxyReply:    w&(1<<27) != 0,
		Security:      w&(1<<26) != 0,
		ForRTR:        w&(1<<24) != 0,
		WantMapNotify: w&(1<<8) != 0,
	}
	m.Nonce, m.KeyID, m.AuthData, m.Records, m.XTR = r.regBody(w, w&(1<<25) != 0)
}

func (r *reader) regBody(w uint32, hasXTR bool) (nonce uint64, keyID uint16, auth []byte, recs []MappingRecord, x *XTRInfo) {
	nonce = r.u64()
	keyID = r.u16()
	auth = r.bytes(int(r.u16()))
	switch {
	case len(auth) == 0:
		auth = nil
	case r.pool != nil:
		r.pool.auth = append(r.pool.auth[:0], auth...)
		auth = r.pool.auth
	default:
		auth = append([]byte(nil), auth...)
	}
	recs = r.records(int(w & 0xff))
	if hasXTR {
		id := r.bytes(16)
		site := r.u64()
		if r.err == nil {
			if r.pool != nil {
				r.pool.xtr = XTRInfo{XTRID: [16]byte(id), SiteID: site}
				x = &r.pool.xtr
			} else {
				x = &XTRInfo{XTRID: [16]byte(id), SiteID: site}
			}
		}
	}
	return
}

func (r *reader) records(n int) []MappingRecord {
	r.need(n*minMappingLen, "record count")
	if r.err != nil || n == 0 {
		return nil
	}
	var recs []MappingRecord
	if r.pool != nil {
		if cap(r.pool.recs) < n {
			r.pool.recs = make([]MappingRecord, n)
		}
		recs = r.pool.recs[:n:n]
	} else {
		recs = make([]MappingRecord, n)
	}
	for i := range recs {
		recs[i] = r.mappingRecord()
	}
	return recs
}

func (r *reader) mapRequest(w uint32) *MapRequest {
	m := &MapRequest{
		Authoritative: w&(1<<27) != 0,
		Probe:         w&(1<<25) != 0,
		SMR:           w&(1<<24) != 0,
		PITR:          w&(1<<23) != 0,
		SMRInvoked:    w&(1<<22) != 0,
		LocalXTR:      w&(1<<14) != 0,
		DontMapReply:  w&(1<<13) != 0,
	}
	irc := int(w>>8&0x1f) + 1
	nrec := int(w & 0xff)
	m.Nonce = r.u64()
	m.SourceEID = r.address(0)
	r.need(irc*2+nrec*minEIDRecLen, "ITR-RLOC and record counts")
	if nrec == 0 {
		r.fail(fmt.Errorf("%w: Map-Request without records", ErrMalformed))
	}
	if r.err != nil {
		return m
	}
	m.ITRRLOCs = make([]Address, irc)
	for i := range m.ITRRLOCs {
		m.ITRRLOCs[i] = r.address(0)
	}
	m.Records = make([]EIDRecord, nrec)
	for i := range m.Records {
		m.Records[i] = r.eidRecord()
	}
	if w&(1<<26) != 0 {
		mr := r.mappingRecord()
		m.MapReply = &mr
	}
	return m
}

func (r *reader) mapReply(w uint32) *MapReply {
	m := &MapReply{Probe: w&(1<<27) != 0, EchoNonce: w&(1<<26) != 0, Security: w&(1<<25) != 0}
	m.Nonce = r.u64()
	m.Records = r.records(int(w & 0xff))
	return m
}

func parseTyped[T Message](b []byte, want Type) (T, error) {
	var zero T
	if len(b) >= 1 && Type(b[0]>>4) != want {
		return zero, fmt.Errorf("%w: want %v, have %v", ErrUnknownType, want, Type(b[0]>>4))
	}
	m, err := Parse(b)
	if err != nil {
		return zero, err
	}
	return m.(T), nil
}

// ParseMapRequest decodes a Map-Request.
func ParseMapRequest(b []byte) (*MapRequest, error) {
	return parseTyped[*MapRequest](b, TypeMapRequest)
}

// ParseMapReply decodes a Map-Reply.
func ParseMapReply(b []byte) (*MapReply, error) { return parseTyped[*MapReply](b, TypeMapReply) }

// ParseMapRegister decodes a Map-Register.
func ParseMapRegister(b []byte) (*MapRegister, error) {
	return parseTyped[*MapRegister](b, TypeMapRegister)
}

// ParseMapNotify decodes a Map-Notify.
func ParseMapNotify(b []byte) (*MapNotify, error) { return parseTyped[*MapNotify](b, TypeMapNotify) }

// ParseMapNotifyAck decodes a Map-Notify-Ack.
func ParseMapNotifyAck(b []byte) (*MapNotifyAck, error) {
	return parseTyped[*MapNotifyAck](b, TypeMapNotifyAck)
}

// ParseECM decodes an Encapsulated Control Message and its inner message.
func ParseECM(b []byte) (*ECM, error) { return parseTyped[*ECM](b, TypeECM) }
