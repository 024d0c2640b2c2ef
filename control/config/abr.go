package config

import (
	"fmt"

	"github.com/psavd/psavd/control/config/schema"
)

// ABR is [abr] (docs/wire.md §4.1): an ABR fed by its AS's ACS.
type ABR struct {
	ACS           string   // host:port of the ACS
	Cert, Key, CA string   // PEM files (they exist)
	CRL           []string // revocation lists (they exist; read and checked by the node)
}

func (c *Config) checkABR(k *checker, f *schema.File) {
	b := f.ABR
	if b == nil {
		return
	}
	c.ABR = &ABR{ACS: b.ACS, Cert: b.Cert, Key: b.Key, CA: b.CA, CRL: b.CRL}
	if f.ACS != nil {
		k.add("abr", "an ACS in the same process feeds its own data plane: give [acs] or [abr], not both")
	}
	if len(f.PSAV.StaticPeers) > 0 {
		k.add("psav.static_peer", "an ABR fed by an ACS ([abr]) takes its keys from the ACS: remove the static peers")
	}
	k.hostPort("abr.acs", b.ACS)
	k.existingFile("abr.cert", b.Cert)
	k.privateKey("abr.key", b.Key)
	k.existingFile("abr.ca", b.CA)
	for i, f := range b.CRL {
		k.existingFile(fmt.Sprintf("abr.crl[%d]", i), f)
	}
}
