package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/oorpeer"
)

// oorPair is two namespaces joined by one veth: psavd on a (10.77.0.1),
// OOR on b (10.77.0.2, its RLOC interface "rloc").
type oorPair struct {
	psavdNS, oorNS string
	bin, buildDir  string
	dir            string
}

const (
	oorPsavdAddr = "10.77.0.1"
	oorRLOC      = "10.77.0.2"
	oorEIDHost   = "10.9.1.1"
)

func newOORPair(t *testing.T) *oorPair {
	t.Helper()
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	bin, build := oorpeer.Need(t, filepath.Join("..", ".."))
	topo := netlab.New()
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	p := &oorPair{bin: bin, buildDir: build, dir: t.TempDir()}
	var err error
	if p.psavdNS, err = topo.NS("ops"); err != nil {
		t.Fatal(err)
	}
	if p.oorNS, err = topo.NS("oor"); err != nil {
		t.Fatal(err)
	}
	if err := topo.Veth(p.psavdNS, "msl", "02:00:00:16:00:01", p.oorNS, "rloc", "02:00:00:16:00:02"); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"-n", p.psavdNS, "addr", "add", oorPsavdAddr + "/24", "dev", "msl"},
		{"-n", p.oorNS, "addr", "add", oorRLOC + "/24", "dev", "rloc"},
		// An address of OOR's EID prefix for traffic into its ITR (its
		// source rule sends 10.9.1.0/24's packets to lispTun0).
		{"-n", p.oorNS, "addr", "add", oorEIDHost + "/32", "dev", "lo"},
	} {
		if err := netlab.IP(c...); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// startOOR runs OOR in the pair's OOR namespace with conf; stopped at
// cleanup, its log shown when the test failed.
func (p *oorPair) startOOR(t *testing.T, name, conf string) *oorpeer.OOR {
	t.Helper()
	wd := filepath.Join(p.dir, name)
	if err := os.MkdirAll(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	o, err := oorpeer.Start(p.bin, p.buildDir, p.oorNS, wd, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o.Stop()
		if t.Failed() {
			log := o.Log()
			if len(log) > 20000 {
				log = "…" + log[len(log)-20000:]
			}
			t.Logf("OOR %s log:\n%s", name, log)
		}
	})
	return o
}

// oorConf joins OOR configuration blocks.
func oorConf(blocks ...string) string { return strings.Join(blocks, "\n") + "\n" }
