package mapserver

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/psavd/psavd/control/lisp"
)

// Defaults (see README.md, "Decisions").
const (
	DefaultRegistrationTTL     = 3 * time.Minute // draft §4.2: time out after three minutes
	DefaultNegativeTTL         = 1               // minutes, negative Map-Reply record TTL inside configured EID space
	DefaultNegativeTTLOutside  = 15              // minutes, outside it (RFC 9301 §5.4's 15-minute suggestion for non-EID space)
	DefaultControlPort         = 4342            // LISP control port (forwarded ECMs go here)
	DefaultNotifyRetryInterval = time.Second
	DefaultNotifyMaxRetries    = 3
	DefaultTickInterval        = 100 * time.Millisecond
)

// EIDPrefix is an EID prefix in an instance (IID 0 is the default instance).
type EIDPrefix struct {
	IID    uint32
	Prefix netip.Prefix
}

func (p EIDPrefix) String() string { return fmt.Sprintf("[%d]%v", p.IID, p.Prefix) }

// Site is a Map-Server site: the shared key its ETRs sign Map-Registers
// with, and the EID prefixes they may register.
type Site struct {
	Name string
	// Key is the shared secret; KeyID the algorithm the site's ETRs must use
	// (lisp.KeyIDHMACSHA1_96 or lisp.KeyIDHMACSHA256128).
	Key   []byte
	KeyID uint16
	// SharedKeyID is the RFC 9301 Key ID (high octet of the key field) the
	// site's ETRs send: 0 for RFC 6833 ETRs, other values for key
	// roll-over (lispers.net).
	SharedKeyID uint8
	// AuthLen, when set, is the only authentication data length accepted
	// from the site (lisp.AuthLength(KeyID, false) or (KeyID, true)); 0
	// accepts both. A Map-Notify always answers with the length its
	// Map-Register used (OOR and lispers.net check it).
	AuthLen int
	// Replay, when set, overrides Config.Replay for this site.
	Replay      *ReplayPolicy
	EIDPrefixes []EIDPrefix
	// AcceptMoreSpecifics lets the site register prefixes inside a
	// configured prefix, not only the configured prefixes themselves.
	AcceptMoreSpecifics bool
	// NotifyAck says the site's ETRs answer Map-Notify with Map-Notify-Ack:
	// Map-Notify is then retransmitted until acknowledged (bounded). The
	// Map-Register has no bit for this, so it is site configuration.
	NotifyAck bool
}

// ReplayPolicy selects the Map-Register anti-replay check.
type ReplayPolicy int

const (
	// ReplayMonotonic (default) follows RFC 9301 §5.6: the ETR increments
	// the nonce with every Map-Register, so a nonce not greater than the last
	// accepted one from the same ETR of the same site is a replay.
	ReplayMonotonic ReplayPolicy = iota
	// ReplayWindow refuses a nonce already accepted from the same ETR within
	// the registration lifetime (for ETRs sending random nonces). Weaker: a
	// message older than the window can be replayed.
	ReplayWindow
	// ReplayOff disables the check (ETRs that always send nonce 0).
	ReplayOff
	// ReplayRecent refuses a Map-Register that is byte for byte one of the
	// last RecentMessages messages accepted from the same ETR, unless it
	// is the latest one: an ETR may repeat its current registration with
	// any nonce scheme (OOR's random nonces, lispers.net's constant nonce,
	// RFC 6833's nonce 0, retransmissions), but a replayed older message
	// cannot bring back a registration the ETR has since changed. See
	// README.md, "Replay".
	ReplayRecent
)

// RecentMessages bounds ReplayRecent's memory per ETR.
const RecentMessages = 64

// ParseReplayPolicy maps the TOML names to policies.
func ParseReplayPolicy(name string) (ReplayPolicy, bool) {
	switch name {
	case "recent":
		return ReplayRecent, true
	case "monotonic":
		return ReplayMonotonic, true
	case "window":
		return ReplayWindow, true
	case "off":
		return ReplayOff, true
	}
	return 0, false
}

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	Sites               []Site
	Replay              ReplayPolicy
	RegistrationTTL     time.Duration
	NegativeTTL         uint32 // minutes, for EIDs inside a site's configured prefixes
	NegativeTTLOutside  uint32 // minutes, for addresses outside every site's prefixes
	ControlPort         uint16 // destination port of ECMs forwarded to ETRs
	NotifyRetryInterval time.Duration
	NotifyMaxRetries    int
	TickInterval        time.Duration    // Serve's timer resolution
	Now                 func() time.Time // Serve's clock (time.Now)
}

func (c *Config) fill() {
	if c.RegistrationTTL <= 0 {
		c.RegistrationTTL = DefaultRegistrationTTL
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = DefaultNegativeTTL
	}
	if c.NegativeTTLOutside == 0 {
		c.NegativeTTLOutside = DefaultNegativeTTLOutside
	}
	if c.ControlPort == 0 {
		c.ControlPort = DefaultControlPort
	}
	if c.NotifyRetryInterval <= 0 {
		c.NotifyRetryInterval = DefaultNotifyRetryInterval
	}
	if c.NotifyMaxRetries <= 0 {
		c.NotifyMaxRetries = DefaultNotifyMaxRetries
	}
	if c.TickInterval <= 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func validateSites(sites []Site) error {
	names := map[string]bool{}
	for i := range sites {
		s := &sites[i]
		if s.Name == "" || names[s.Name] {
			return fmt.Errorf("mapserver: site %d: empty or duplicate name %q", i, s.Name)
		}
		names[s.Name] = true
		if lisp.AuthLength(s.KeyID, false) == 0 {
			return fmt.Errorf("mapserver: site %s: unsupported key id %d", s.Name, s.KeyID)
		}
		if len(s.Key) == 0 {
			return fmt.Errorf("mapserver: site %s: empty key", s.Name)
		}
		if s.AuthLen != 0 && s.AuthLen != lisp.AuthLength(s.KeyID, false) && s.AuthLen != lisp.AuthLength(s.KeyID, true) {
			return fmt.Errorf("mapserver: site %s: auth length %d not allowed for key id %d", s.Name, s.AuthLen, s.KeyID)
		}
		if len(s.EIDPrefixes) == 0 {
			return fmt.Errorf("mapserver: site %s: no EID prefixes", s.Name)
		}
		for _, p := range s.EIDPrefixes {
			if !p.Prefix.IsValid() || p.Prefix != p.Prefix.Masked() || p.Prefix.Addr().Zone() != "" {
				return fmt.Errorf("mapserver: site %s: EID prefix %v is not a canonical prefix", s.Name, p)
			}
			if p.Prefix.Addr().Is4In6() {
				return errors.New("mapserver: IPv4-mapped IPv6 EID prefixes are not supported")
			}
		}
	}
	return nil
}
