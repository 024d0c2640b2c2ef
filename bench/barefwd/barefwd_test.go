package barefwd

import (
	"context"
	"testing"
	"time"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/ports/afxdp"
)

// TestForwards runs the bare forwarder through a short benchmark: both
// families come out at the sink untouched. Rates are logged, not asserted.
func TestForwards(t *testing.T) {
	if why := bench.Supported(); why != "" {
		t.Skip(why)
	}
	if why := afxdp.Supported(); why != "" {
		t.Skip(why)
	}
	d := &DUT{}
	r, err := bench.Run(context.Background(), bench.Scenario{
		Name: "short", Warmup: 300 * time.Millisecond, Duration: 700 * time.Millisecond,
		Check: bench.NoneTagged,
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	t.Logf("port stats: %+v", d.Stats)
	if r.Delivered.IPv4 == 0 || r.Delivered.IPv6 == 0 {
		t.Fatalf("both families should be forwarded: %v", r.Delivered)
	}
}
