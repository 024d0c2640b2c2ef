package pull

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/psavd/psavd/control/adot"
)

// The map-server zone from live membership (issue 5, docs/wire.md §3.5 "Server"):
// the pull-based mapping system resolves <index>.<suffix> to the
// map-servers that own an index. Where those map-servers are the members of
// a push registration group, the zone can follow the group's membership
// instead of being written by hand: every index is owned by `replicas`
// members, spread evenly and deterministically, so two DoT servers that see
// the same membership serve the same zone.

// IndexOwners assigns each index 0 … modulus−1 to min(replicas, n) of the n
// members: index i to the members at positions i, i+1, … (mod n) of the
// members sorted by address. Adding or removing one member moves only the
// indexes next to it in that order. Empty when there are no members.
func IndexOwners(modulus uint64, replicas int, members []netip.Addr) map[uint64][]netip.Addr {
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b netip.Addr) int { return a.Compare(b) })
	ms = slices.Compact(ms)
	out := make(map[uint64][]netip.Addr, modulus)
	if len(ms) == 0 || replicas <= 0 {
		return out
	}
	r := min(replicas, len(ms))
	for i := uint64(0); i < modulus; i++ {
		owners := make([]netip.Addr, r)
		for k := range r {
			owners[k] = ms[(i+uint64(k))%uint64(len(ms))]
		}
		out[i] = owners
	}
	return out
}

// IndexZone is the zone origin with one owner name per index (A and AAAA
// records of its map-servers, IPv4-mapped addresses as A) plus the static
// records (adot.ZoneFromMap's form, e.g. the apex NS and its glue).
func IndexZone(origin string, ttl uint32, modulus uint64, replicas int, members []netip.Addr, static map[string][]string) (*adot.Zone, error) {
	if modulus == 0 || modulus > MaxZoneIndexes {
		return nil, fmt.Errorf("decent: zone %s: modulus %d not in 1..%d", origin, modulus, MaxZoneIndexes)
	}
	recs := make(map[string][]string, len(static)+int(modulus))
	for k, v := range static {
		recs[k] = slices.Clone(v)
	}
	for i, owners := range IndexOwners(modulus, replicas, members) {
		name := strconv.FormatUint(i, 10)
		if _, taken := static[name]; taken {
			return nil, fmt.Errorf("decent: zone %s: index name %q is also a static record", origin, name)
		}
		for _, a := range owners {
			a = a.Unmap()
			if a.Is4() {
				recs[name] = append(recs[name], "A "+a.String())
			} else {
				recs[name] = append(recs[name], "AAAA "+a.String())
			}
		}
	}
	return adot.ZoneFromMap(origin, ttl, recs)
}

// MaxZoneIndexes bounds the modulus of a generated zone (one name each).
const MaxZoneIndexes = 1 << 16

// ZoneFeed keeps a DoT server's zone in step with a membership: Run polls
// Members every Interval and installs a new zone when the membership
// changes (an atomic swap in the server: queries in flight are answered
// from the old or the new zone, never from a mix). Each installed zone is
// a change to the server: it raises the SOA serial and NOTIFYs the
// secondaries (adot.Server.SetZone).
type ZoneFeed struct {
	Server   *adot.Server
	Origin   string
	TTL      uint32 // keep it short: resolvers re-ask when it runs out
	Modulus  uint64
	Replicas int
	Static   map[string][]string
	Members  func(now time.Time) []netip.Addr // e.g. a PushNode's Members of its group
	Interval time.Duration                    // default 1 s
	OnChange func(members []netip.Addr, err error)

	mu   sync.Mutex // guards TTL and Static (SetStatic) and the state below
	last []netip.Addr
	done bool
}

// SetStatic replaces the TTL and the static records (a configuration
// reload); the next Update installs a zone even if the membership is the
// same.
func (f *ZoneFeed) SetStatic(ttl uint32, static map[string][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.TTL, f.Static, f.done = ttl, static, false
}

// Update installs the zone for the members at now if they changed; it
// reports whether a new zone was installed.
func (f *ZoneFeed) Update(now time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ms := slices.Clone(f.Members(now))
	slices.SortFunc(ms, func(a, b netip.Addr) int { return a.Compare(b) })
	ms = slices.Compact(ms)
	if f.done && slices.Equal(ms, f.last) {
		return false, nil
	}
	z, err := IndexZone(f.Origin, f.TTL, f.Modulus, f.Replicas, ms, f.Static)
	if err != nil {
		return false, err
	}
	f.Server.SetZone(z)
	f.last, f.done = ms, true
	return true, nil
}

// Run updates the zone until ctx ends.
func (f *ZoneFeed) Run(ctx context.Context) error {
	iv := f.Interval
	if iv <= 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		changed, err := f.Update(time.Now())
		if (changed || err != nil) && f.OnChange != nil {
			f.mu.Lock()
			last := f.last
			f.mu.Unlock()
			f.OnChange(last, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
