package dot

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/testtool"

	"github.com/psavd/psavd/internal/bindserver"
)

// TestRunShort runs every mode briefly against BIND and checks that each
// produced results and that mode (c) really resumed. No timing assertions.
func TestRunShort(t *testing.T) {
	testtool.Path(t, "named", "bind9")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 50
	r, err := Run(ctx, Options{Queries: n})
	if errors.Is(err, bindserver.ErrNoNamed) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Modes) != len(AllModes) {
		t.Fatalf("got %d modes, want %d", len(r.Modes), len(AllModes))
	}
	for _, m := range AllModes {
		mr, ok := r.Get(m)
		if !ok {
			t.Fatalf("mode %s missing", m)
		}
		if mr.Queries != n || mr.P50 <= 0 || mr.P99 < mr.P50 || mr.QPS <= 0 {
			t.Errorf("mode %s: implausible result %+v", m, mr)
		}
	}
	if res, _ := r.Get(ModeResumed); res.Resumed != n || res.NewConns != n {
		t.Errorf("resumed mode: %d/%d resumed, %d new connections, want all %d", res.Resumed, n, res.NewConns, n)
	}
	if full, _ := r.Get(ModeFull); full.Resumed != 0 || full.NewConns != n {
		t.Errorf("full mode: %d resumed, %d new connections, want 0 and %d", full.Resumed, full.NewConns, n)
	}
	if pers, _ := r.Get(ModePersistent); pers.NewConns != 0 {
		t.Errorf("persistent mode: %d new connections during the measured queries, want 0", pers.NewConns)
	}
	if r.Ratio <= 0 {
		t.Errorf("ratio %v", r.Ratio)
	}
	var sb testWriter
	r.WriteTable(&sb)
	t.Logf("%s\n%s", r.BIND, sb)
}

type testWriter []byte

func (w *testWriter) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }
func (w testWriter) String() string               { return string(w) }
