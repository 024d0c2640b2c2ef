package push

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/psavd/psavd/control/lisp"
	"github.com/psavd/psavd/control/lisp/mapserver"
)

// Transport says how a push node sends Map-Registers to its group.
type Transport int

const (
	// TransportMulticast: one datagram to G:4342 on the configured
	// interface; the underlay carries IP multicast.
	TransportMulticast Transport = iota
	// TransportUnicast: one LISP-encapsulated copy (UDP 4341, instance-ID
	// 0xffffff) to every RLOC of the group's RLE.
	TransportUnicast
)

// ParseTransport reads "multicast" or "unicast".
func ParseTransport(s string) (Transport, error) {
	switch s {
	case "multicast":
		return TransportMulticast, nil
	case "unicast":
		return TransportUnicast, nil
	}
	return 0, fmt.Errorf("transport %q is not multicast or unicast", s)
}

func (t Transport) String() string {
	if t == TransportUnicast {
		return "unicast"
	}
	return "multicast"
}

// Push defaults.
const (
	DefaultRefresh         = time.Minute     // membership and EID registrations re-sent
	DefaultTTL             = 3 * time.Minute // registration lifetime (draft §4.2 of the Map-Server draft)
	DefaultTick            = 100 * time.Millisecond
	DefaultLISPDataPort    = 4341
	DefaultLISPControlPort = 4342
	DefaultMulticastTTL    = 16
	maxRecordsPerRegister  = 32 // keeps a Map-Register well under 1500 octets
)

// SeedGroup is the core seed-group (draft §4.4) as a push node knows it:
// its group address and at least one of its members' RLOCs.
type SeedGroup struct {
	Group   netip.Addr   // key "group"
	Members []netip.Addr // key "members": RLOCs of core members (one is enough)
}

// EID is one EID prefix this node registers (as an ETR, with its RLOC
// as the locator), signed with the key of the named site.
type EID struct {
	Site   string       // key "site": a name in Sites
	IID    uint32       // key "iid"
	Prefix netip.Prefix // key "prefix"
}

func (e EID) String() string { return fmt.Sprintf("%s:[%d]%v", e.Site, e.IID, e.Prefix) }

// Config configures a push-mode LISP-Decent node. The field comments
// give the key each field is meant to have in a configuration section;
// ConfigErrors name those keys. Every member of a group must share Sites,
// MembershipKey(ID) and RegistrationTTL.
type Config struct {
	Group     netip.Addr // "group": the registration group G (IPv4 or IPv6 multicast)
	RLOC      netip.Addr // "rloc": this node's underlay address (same family as G)
	Transport Transport  // "transport": multicast (default) | unicast
	// Interface ("interface") is where G is joined and sent on; required
	// with TransportMulticast.
	Interface    string
	MulticastTTL int // "multicast_ttl": hop limit of multicast Map-Registers (16)
	// Members ("members") are RLOCs of G known by configuration (a core
	// seed-group lists its members here); the RLE learned from
	// registrations and from the core is added to them.
	Members []netip.Addr
	// Core ("core") is the core seed-group through which this node finds
	// G's members and where it registers G's membership. nil for a node of
	// the core seed-group itself.
	Core *SeedGroup

	// MembershipKeyID/MembershipKey ("membership_key_id",
	// "membership_key") sign and verify the (0/0, G) membership
	// registrations of every group (draft §4.3: one key among members).
	MembershipKeyID uint16
	MembershipKey   []byte

	Sites []mapserver.Site // "site": who may register what; identical in all members
	EIDs  []EID            // "eid": what this node registers

	RefreshInterval time.Duration // "refresh_interval": 60 s
	RegistrationTTL time.Duration // "registration_ttl": 3 min; > refresh_interval
	LookupInterval  time.Duration // "lookup_interval": look-ups of G in the core (refresh_interval)
	TickInterval    time.Duration // 100 ms
	ControlPort     uint16        // "control_port": 4342
	DataPort        uint16        // "data_port": 4341
	Replay          mapserver.ReplayPolicy
	// XTRID identifies this node in its registrations (replay state and
	// registration identity at every member); zero = derived from RLOC.
	XTRID [16]byte

	// OnMismatch is called (without locks held) for every registration
	// from another member refused for a configuration reason.
	OnMismatch func(Mismatch)
	Now        func() time.Time
}

// ConfigError is one problem in a Config: Field is the configuration
// key (e.g. "core.members[1]", "eid[0].site").
type ConfigError struct {
	Field  string
	Reason string
}

func (e ConfigError) Error() string { return e.Field + ": " + e.Reason }

// ConfigErrors is every problem found by Config.Validate.
type ConfigErrors []ConfigError

func (es ConfigErrors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return "decent push: " + strings.Join(s, "; ")
}

func (c *Config) fill() {
	if c.MulticastTTL == 0 {
		c.MulticastTTL = DefaultMulticastTTL
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = DefaultRefresh
	}
	if c.RegistrationTTL == 0 {
		c.RegistrationTTL = DefaultTTL
	}
	if c.LookupInterval == 0 {
		c.LookupInterval = c.RefreshInterval
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTick
	}
	if c.ControlPort == 0 {
		c.ControlPort = DefaultLISPControlPort
	}
	if c.DataPort == 0 {
		c.DataPort = DefaultLISPDataPort
	}
	if c.XTRID == ([16]byte{}) {
		c.XTRID = c.RLOC.As16()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate fills defaults and returns ConfigErrors (nil when sound).
func (c *Config) Validate() error {
	c.fill()
	var es ConfigErrors
	bad := func(field, format string, args ...any) {
		es = append(es, ConfigError{field, fmt.Sprintf(format, args...)})
	}
	groupOK := c.Group.IsValid() && c.Group.IsMulticast() && c.Group.Zone() == ""
	if !groupOK {
		bad("group", "%v is not an IPv4 or IPv6 multicast address", c.Group)
	}
	unicast := func(field string, a netip.Addr) {
		switch {
		case !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.Zone() != "" || a.Is4In6():
			bad(field, "%v is not a unicast address", a)
		case groupOK && a.Is4() != c.Group.Is4():
			bad(field, "%v is not of the group's family (%v)", a, c.Group)
		}
	}
	unicast("rloc", c.RLOC)
	if c.Transport != TransportMulticast && c.Transport != TransportUnicast {
		bad("transport", "unknown transport %d", c.Transport)
	}
	if c.Transport == TransportMulticast && c.Interface == "" {
		bad("interface", "required with transport = multicast (where G is joined)")
	}
	if c.MulticastTTL < 1 || c.MulticastTTL > 255 {
		bad("multicast_ttl", "%d is not 1..255", c.MulticastTTL)
	}
	for i, m := range c.Members {
		unicast(fmt.Sprintf("members[%d]", i), m)
	}
	if c.Core != nil {
		switch {
		case !c.Core.Group.IsValid() || !c.Core.Group.IsMulticast():
			bad("core.group", "%v is not a multicast address", c.Core.Group)
		case groupOK && c.Core.Group.Is4() != c.Group.Is4():
			bad("core.group", "%v is not of the group's family", c.Core.Group)
		case c.Core.Group == c.Group:
			bad("core.group", "equals group: a core seed-group member lists the core's RLOCs in members instead")
		}
		if len(c.Core.Members) == 0 && c.Transport == TransportUnicast {
			bad("core.members", "at least one core member RLOC is needed without multicast")
		}
		for i, m := range c.Core.Members {
			unicast(fmt.Sprintf("core.members[%d]", i), m)
		}
	}
	if lisp.AuthLength(c.MembershipKeyID, false) == 0 {
		bad("membership_key_id", "%d is not 1 (HMAC-SHA-1-96) or 2 (HMAC-SHA-256-128)", c.MembershipKeyID)
	}
	if len(c.MembershipKey) == 0 {
		bad("membership_key", "empty")
	}
	if _, err := mapserver.New(mapserver.Config{Sites: c.Sites}); err != nil {
		bad("site", "%v", strings.TrimPrefix(err.Error(), "mapserver: "))
	}
	for i, e := range c.EIDs {
		f := fmt.Sprintf("eid[%d]", i)
		site := c.site(e.Site)
		if site == nil {
			bad(f+".site", "no site named %q", e.Site)
			continue
		}
		if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() {
			bad(f+".prefix", "%v is not a canonical prefix", e.Prefix)
		} else if !siteAllows(site, e.IID, e.Prefix) {
			bad(f+".prefix", "[%d]%v is not allowed by site %s", e.IID, e.Prefix, site.Name)
		}
	}
	if c.RefreshInterval < 0 {
		bad("refresh_interval", "negative")
	}
	if c.RegistrationTTL <= c.RefreshInterval {
		bad("registration_ttl", "%v must exceed refresh_interval %v (registrations would expire between refreshes)", c.RegistrationTTL, c.RefreshInterval)
	}
	if c.LookupInterval < 0 {
		bad("lookup_interval", "negative")
	}
	if c.TickInterval < 0 {
		bad("tick_interval", "negative")
	}
	if c.ControlPort == c.DataPort {
		bad("data_port", "equals control_port %d", c.ControlPort)
	}
	if es != nil {
		return es
	}
	return nil
}

func (c *Config) site(name string) *mapserver.Site {
	for i := range c.Sites {
		if c.Sites[i].Name == name {
			return &c.Sites[i]
		}
	}
	return nil
}

// siteAllows mirrors the Map-Server's hijack check, so a node refuses at
// start an EID every member would refuse.
func siteAllows(s *mapserver.Site, iid uint32, p netip.Prefix) bool {
	for _, q := range s.EIDPrefixes {
		if q.IID != iid || q.Prefix.Addr().Is4() != p.Addr().Is4() {
			continue
		}
		if q.Prefix == p || s.AcceptMoreSpecifics && q.Prefix.Bits() <= p.Bits() && q.Prefix.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
