package node

import (
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/psavd/psavd/control/config"
	"github.com/psavd/psavd/control/lisp/xtr"
	"github.com/psavd/psavd/control/static"
	"github.com/psavd/psavd/engine"
)

// Result is the outcome of a reload: the changes now in force, and those
// that need a restart (when there is any, nothing was applied).
type Result struct {
	Applied []config.Change
	Restart []config.Change
}

func (r Result) String() string {
	if len(r.Restart) > 0 {
		return "refused: needs a restart: " + joinChanges(r.Restart)
	}
	if len(r.Applied) == 0 {
		return "no change"
	}
	return "applied: " + joinChanges(r.Applied)
}

func joinChanges(cs []config.Change) string {
	s := make([]string, len(cs))
	for i, c := range cs {
		s[i] = c.String()
	}
	return strings.Join(s, ", ")
}

// Reload puts next in force where the running node can take it live, on
// every kind of node: members and static peers (static keys), routes (also
// while an ACS feeds the node: routes are their own part of the tables),
// Map-Server sites, the indexes a LISP-Decent pull Map-Server owns, the
// DoT server's zone, the log level, and the [acs] and
// [abr] certificates and trust anchors (read again from their files on
// every reload, so a renewal needs only SIGHUP). A change to any
// other key needs a restart: then nothing is applied, the running
// configuration stays, and the keys are named. The outcome is logged and
// exported (psavd_config_reload_success,
// psavd_config_last_reload_timestamp_seconds).
//
// Nothing is half applied: every new table is built first, then all are
// published; a legitimate packet sees either the old or the new tables,
// never a gap (docs/wire.md §2.7–§2.8).
func (n *Node) Reload(next *config.Config) (res Result, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	defer func() {
		n.reload.record(err == nil)
		if err != nil {
			n.log.Error("reload refused; the running configuration stays", zap.Error(err))
		} else {
			n.log.Info("reloaded", zap.String("config", next.File), zap.Stringer("outcome", res))
		}
	}()
	cur := n.cfg
	var apply []func()
	for _, ch := range config.Diff(cur, next) {
		if n.live(ch.Key) {
			res.Applied = append(res.Applied, ch)
		} else {
			res.Restart = append(res.Restart, ch)
		}
	}
	if len(res.Restart) > 0 {
		return res, fmt.Errorf("%s: %s", next.File, res)
	}
	// Certificates and trust anchors: read again on every reload (a
	// renewal rewrites the same files, which Diff cannot see).
	if n.psav != nil {
		renew, changed, err := n.psav.renewCredentials(next)
		if err != nil {
			return res, err
		}
		for _, section := range changed {
			if !touchedIn(res.Applied, section+".cert") && !touchedIn(res.Applied, section+".key") && !touchedIn(res.Applied, section+".ca") {
				res.Applied = append(res.Applied, config.Change{Key: section + ".cert", Kind: config.Changed})
			}
		}
		apply = append(apply, renew)
	}
	if touchedIn(res.Applied, "psav.member") || touchedIn(res.Applied, "psav.static_peer") {
		sched, err := static.New(next.PSAV)
		if err != nil {
			return res, fmt.Errorf("%s: %w", next.File, err)
		}
		pub := n.psav.pub
		apply = append(apply, func() { pub.Swap(sched) })
	}
	if touchedIn(res.Applied, "route") {
		rt, err := n.dp.routes(next)
		if err != nil {
			return res, err
		}
		eng := n.dp.eng
		apply = append(apply, func() { eng.PublishRoutes(rt) })
	}
	if touchedIn(res.Applied, "lisp.site") {
		ms, sites := n.lisp.ms, next.LISP.Sites
		apply = append(apply, func() {
			if err := ms.SetSites(sites); err != nil { // checked by New already: cannot fail here
				n.log.Error("map-server sites", zap.Error(err))
			}
		})
	}
	if touchedIn(res.Applied, "lisp.database") {
		x, db := n.lisp.x, next.LISP.Database
		if err := xtr.CheckDatabase(db); err != nil {
			return res, fmt.Errorf("%s: %w", next.File, err)
		}
		apply = append(apply, func() { _ = x.SetDatabase(db) }) // checked above: registered at once, SMRs sent
	}
	if touchedIn(res.Applied, "lisp.decent.owned") {
		g, owned := n.lisp.dn.guard, next.LISP.Decent.Owned
		if len(owned) == 0 { // no ownership check any more: the Map-Server's socket changes hands
			return res, fmt.Errorf("%s: lisp.decent.owned removed: needs a restart", next.File)
		}
		apply = append(apply, func() { g.SetOwned(owned) })
	}
	if touchedIn(res.Applied, "adot.server") {
		if d := n.dot; d.feed != nil { // the zone follows membership: new static records, TTL or owners for the feed
			ix := next.ADoT.Index
			if ix == nil || (ix.Owners == nil) != (d.owners.Load() == nil) {
				return res, fmt.Errorf("%s: adot.server.index_modulus or index_owners added or removed: needs a restart", next.File)
			}
			apply = append(apply, func() {
				if ix.Owners != nil {
					d.setOwners(ix.Owners)
				}
				d.feed.SetStatic(ix.TTL, ix.Static)
			})
		} else {
			srv, zone := n.dot.srv, next.ADoT.Server.Zone
			apply = append(apply, func() { srv.SetZone(zone) })
		}
	}
	if touchedIn(res.Applied, "log") {
		lvl := next.Log.Level
		apply = append(apply, func() { n.opts.Level.SetLevel(lvl) })
	}
	for _, f := range apply {
		f()
	}
	n.cfg = next
	return res, nil
}

// live reports whether a change of key can be applied to this running
// node without a restart.
func (n *Node) live(key string) bool {
	switch {
	case under(key, "psav.member"), under(key, "psav.static_peer"):
		return n.psav != nil && n.psav.pub != nil // static keys; an ACS owns these otherwise
	case under(key, "route"):
		return n.dp != nil && n.dp.spec.Forwarding == engine.Routed
	case under(key, "lisp.site"):
		return n.lisp != nil && n.lisp.ms != nil
	case under(key, "lisp.database"): // the ETR's mappings: re-registered, SMRs to the ITRs in the map-cache
		return n.lisp != nil && n.lisp.x != nil && len(n.cfg.LISP.Database) > 0
	case under(key, "adot.server.records"), under(key, "adot.server.zone_file"), key == "adot.server.ttl":
		return n.dot != nil
	case under(key, "adot.server.index_owners"): // configured owners, on a node whose zone follows them
		return n.dot != nil && n.dot.feed != nil && n.dot.owners.Load() != nil
	case key == "log.level":
		return true
	case key == "lisp.decent.owned": // the pull ownership check, when it runs
		return n.lisp != nil && n.lisp.dn != nil && n.lisp.dn.guard != nil && len(n.cfg.LISP.Decent.Owned) > 0
	case key == "acs.cert", key == "acs.key", key == "acs.ca", under(key, "acs.crl"):
		return n.psav != nil && n.psav.acsCreds != nil
	case key == "abr.cert", key == "abr.key", key == "abr.ca", under(key, "abr.crl"):
		return n.psav != nil && n.psav.abrCreds != nil
	}
	return false
}

// touchedIn reports whether a change in cs is key prefix or below it.
func touchedIn(cs []config.Change, prefix string) bool {
	for _, ch := range cs {
		if under(ch.Key, prefix) {
			return true
		}
	}
	return false
}

func under(key, prefix string) bool {
	return key == prefix || strings.HasPrefix(key, prefix+".") || strings.HasPrefix(key, prefix+"[")
}

// ReloadRefused records a reload that never reached Reload (the new file
// had problems): psavd_config_reload_success goes to 0.
func (n *Node) ReloadRefused() { n.reload.record(false) }
