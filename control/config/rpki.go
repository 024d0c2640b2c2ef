package config

import "github.com/psavd/psavd/control/config/schema"

// RPKI is [rpki]: an RTR server (RFC 8210) whose validated ROA payloads vet
// membership records (docs/wire.md §3.2); used by an ACS.
type RPKI struct {
	Server string // host:port of the RTR cache, plain TCP
}

func (c *Config) checkRPKI(k *checker, f *schema.File) {
	r := f.RPKI
	if r == nil {
		return
	}
	c.RPKI = &RPKI{Server: r.Server}
	k.hostPort("rpki.server", r.Server)
	if f.ACS == nil {
		k.add("rpki", "only an ACS uses RPKI data: add [acs] or remove [rpki]")
	}
}
