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
		if st, ok := old[site.Name]; ok {
			site.Key = bytes.Clone(site.Key)
			site.EIDPrefixes = append([]EIDPrefix(nil), site.EIDPrefixes...)
			st.Site = site // entries refer to st by id: they follow the new settings
			st.mac = nil   // the key may have changed
			next = append(next, st)
			delete(old, site.Name)
			continue
		}
		next = append(next, s.newSite(site))
	}
	s.sites = next
	removed := map[uint32]bool{}
	for _, st := range old {
		removed[st.id] = true
		s.siteTab[st.id] = nil
	}
	s.tab.each(func(r ref, e *entry) {
		if removed[e.site] {
			s.removeEntry(r)
			return
		}
		switch out := !s.siteTab[e.site].allows(e.k); {
		case out && !e.outside:
			s.outside++
		case !out && e.outside:
			s.outside--
		default:
			return
		}
		e.outside = !e.outside
	})
	for k, p := range s.pending {
		if removed[p.site.id] {
			delete(s.pending, k)
		}
	}
	return nil
}
