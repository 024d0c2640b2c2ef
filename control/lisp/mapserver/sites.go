package mapserver

import "bytes"

// SetSites replaces the configured sites (a configuration reload) without
// disturbing what stays: a site whose name is kept keeps its registrations
// and its replay state, under its new key and prefixes (a registration its
// new prefixes no longer allow is refused at its next refresh and expires);
// a new site starts empty; the registrations of a removed site are dropped
// at once, so that a revoked site's EIDs are no longer answered for.
func (s *Server) SetSites(sites []Site) error {
	if err := validateSites(sites); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := map[string]*siteState{}
	for _, st := range s.sites {
		old[st.Name] = st
	}
	next := make([]*siteState, 0, len(sites))
	for _, site := range sites {
		site.Key = bytes.Clone(site.Key)
		site.EIDPrefixes = append([]EIDPrefix(nil), site.EIDPrefixes...)
		if st, ok := old[site.Name]; ok {
			st.Site = site // entries point at st: they follow the new settings
			st.mac = nil   // the key may have changed
			next = append(next, st)
			delete(old, site.Name)
			continue
		}
		next = append(next, &siteState{Site: site, replay: map[etrID]*replayState{}})
	}
	s.sites = next
	if len(old) == 0 {
		return nil
	}
	for k, es := range s.regs {
		live := es[:0]
		for _, e := range es {
			if o, removed := old[e.site.Name]; !removed || o != e.site {
				live = append(live, e)
			} else {
				s.expiry.remove(e)
			}
		}
		clear(es[len(live):])
		if len(live) == 0 {
			s.dropKey(k)
		} else {
			s.regs[k] = live
		}
	}
	for k, p := range s.pending {
		if o, removed := old[p.site.Name]; removed && o == p.site {
			delete(s.pending, k)
		}
	}
	return nil
}
