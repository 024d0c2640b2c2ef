package lispload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/oorpeer"
)

// TestBenchAgainstOOR runs the benchmark briefly (a 20 000-registration
// table, one refresh round) against psavd's Map-Server and OOR's: every
// Map-Register of every round is answered by a Map-Notify, from both, and
// the report names both and their ratio. Rates are printed, not checked.
// Needs root (namespaces) and ../shared/peers (skipped without).
func TestBenchAgainstOOR(t *testing.T) {
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	if testing.Short() {
		t.Skip("-short: builds psavd and OOR")
	}
	oorBin, oorDir := oorpeer.Need(t, filepath.Join("..", ".."))
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	psavd, err := bench.BuildPsavd(binDir)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	rep, err := Bench(Options{Servers: []string{Psavd, OOR}, Psavd: psavd, OORBin: oorBin, OORDir: oorDir, WorkDir: dir,
		Table: 20000, Step: 10000, Refresh: 1, Idle: time.Second, Log: &log})
	t.Log("\n" + log.String())
	if err != nil {
		for _, f := range []string{"psavd/psavd.log", "oor/oor.log"} {
			b, _ := os.ReadFile(filepath.Join(dir, f))
			t.Logf("%s:\n%s", f, b)
		}
		t.Fatal(err)
	}
	if len(rep.Rounds) != 3 {
		t.Fatalf("%d rounds, want 2 growth + 1 refresh", len(rep.Rounds))
	}
	for i, row := range rep.Rounds {
		for _, r := range row {
			if r.Round.Notifies != r.Round.Sent || r.Round.Lost != 0 || r.Round.Sent == 0 {
				t.Fatalf("round %d %s: %+v", i+1, r.Server, r.Round)
			}
		}
	}
	if last := rep.Rounds[len(rep.Rounds)-1]; last[0].Round.Table != 20000 || last[1].Round.Table != 20000 {
		t.Fatalf("tables %d, %d, want 20000", last[0].Round.Table, last[1].Round.Table)
	}
	var md strings.Builder
	rep.WriteMarkdown(&md)
	if !strings.Contains(md.String(), "psavd/OOR") {
		t.Fatalf("report:\n%s", md.String())
	}
	t.Log("\n" + md.String())
}
