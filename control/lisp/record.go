package lisp

import (
	"encoding/binary"
	"fmt"
)

// Action is the 3-bit ACT field of a mapping record (RFC 9301 §5.4).
type Action uint8

// Map-Reply actions.
const (
	ActionNoAction        Action = 0
	ActionNativelyForward Action = 1
	ActionSendMapRequest  Action = 2
	ActionDrop            Action = 3 // Drop/No-Reason
	ActionPolicyDenied    Action = 4 // Drop/Policy-Denied
	ActionAuthFailure     Action = 5 // Drop/Auth-Failure
)

// Locator is one RLOC of a mapping record.
type Locator struct {
	Priority  uint8
	Weight    uint8
	MPriority uint8
	MWeight   uint8
	Local     bool // L: the locator is local to the sender
	Probed    bool // p: the Map-Reply answers an RLOC-probe for this locator
	Reachable bool // R: the locator is up
	Address   Address
}

// MappingRecord is the record of Map-Reply, Map-Register and Map-Notify
// (and the optional Map-Reply record of a Map-Request). The Locator Count
// field is len(Locators).
type MappingRecord struct {
	TTL           uint32 // minutes
	EIDMaskLen    uint8
	Action        Action
	Authoritative bool
	MapVersion    uint16 // 12 bits
	EID           Address
	Locators      []Locator
}

// EIDRecord is a Map-Request record: an EID prefix.
type EIDRecord struct {
	MaskLen uint8
	EID     Address
}

const (
	minLocatorLen = 8  // priorities, flags, AFI 0
	minMappingLen = 12 // TTL, counts/flags, version, AFI 0
	minEIDRecLen  = 4
	maxMapVersion = 0xfff
)

func checkMask(maskLen uint8, eid Address) error {
	if m := eid.maxMaskLen(); m >= 0 && int(maskLen) > m {
		return fmt.Errorf("mask length %d exceeds %d for %v", maskLen, m, eid)
	}
	return nil
}

func appendLocator(b []byte, l *Locator) ([]byte, error) {
	b = append(b, l.Priority, l.Weight, l.MPriority, l.MWeight)
	var f uint16
	if l.Local {
		f |= 4
	}
	if l.Probed {
		f |= 2
	}
	if l.Reachable {
		f |= 1
	}
	b = binary.BigEndian.AppendUint16(b, f)
	return appendAddress(b, l.Address, 0)
}

func (r *reader) locator() Locator {
	var l Locator
	l.Priority, l.Weight, l.MPriority, l.MWeight = r.u8(), r.u8(), r.u8(), r.u8()
	f := r.u16()
	l.Local, l.Probed, l.Reachable = f&4 != 0, f&2 != 0, f&1 != 0
	l.Address = r.address(0)
	return l
}

// AppendMappingRecord appends the encoding of m to b.
func AppendMappingRecord(b []byte, m *MappingRecord) ([]byte, error) {
	if len(m.Locators) > 255 {
		return b, fmt.Errorf("%w: %d locators", ErrInvalid, len(m.Locators))
	}
	if m.Action > 7 {
		return b, fmt.Errorf("%w: action %d", ErrInvalid, m.Action)
	}
	if m.MapVersion > maxMapVersion {
		return b, fmt.Errorf("%w: map-version %d", ErrInvalid, m.MapVersion)
	}
	if err := checkMask(m.EIDMaskLen, m.EID); err != nil {
		return b, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	b = binary.BigEndian.AppendUint32(b, m.TTL)
	b = append(b, byte(len(m.Locators)), m.EIDMaskLen)
	f := uint16(m.Action) << 13
	if m.Authoritative {
		f |= 1 << 12
	}
	b = binary.BigEndian.AppendUint16(b, f)
	b = binary.BigEndian.AppendUint16(b, m.MapVersion)
	var err error
	if b, err = appendAddress(b, m.EID, 0); err != nil {
		return b, err
	}
	for i := range m.Locators {
		if b, err = appendLocator(b, &m.Locators[i]); err != nil {
			return b, err
		}
	}
	return b, nil
}

func (r *reader) mappingRecord() MappingRecord {
	var m MappingRecord
	m.TTL = r.u32()
	n := int(r.u8())
	m.EIDMaskLen = r.u8()
	f := r.u16()
	m.Action = Action(f >> 13)
	m.Authoritative = f&(1<<12) != 0
	m.MapVersion = r.u16() & maxMapVersion
	m.EID = r.address(0)
	if r.err == nil {
		if err := checkMask(m.EIDMaskLen, m.EID); err != nil {
			r.fail(fmt.Errorf("%w: %v", ErrMalformed, err))
		}
	}
	r.need(n*minLocatorLen, "locator count")
	if r.err != nil {
		return m
	}
	if n > 0 {
		m.Locators = r.locators(n)
		for i := range m.Locators {
			m.Locators[i] = r.locator()
		}
	}
	return m
}

// ParseMappingRecord decodes one mapping record from the front of b and
// returns it with the number of octets consumed.
func ParseMappingRecord(b []byte) (MappingRecord, int, error) {
	r := reader{b: b}
	m := r.mappingRecord()
	return m, r.off, r.err
}

func appendEIDRecord(b []byte, e *EIDRecord) ([]byte, error) {
	if err := checkMask(e.MaskLen, e.EID); err != nil {
		return b, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	b = append(b, 0, e.MaskLen)
	return appendAddress(b, e.EID, 0)
}

func (r *reader) eidRecord() EIDRecord {
	var e EIDRecord
	r.u8()
	e.MaskLen = r.u8()
	e.EID = r.address(0)
	if r.err == nil {
		if err := checkMask(e.MaskLen, e.EID); err != nil {
			r.fail(fmt.Errorf("%w: %v", ErrMalformed, err))
		}
	}
	return e
}
