package barefwd

import (
	"context"
	"runtime"
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

// TestForwardsTwoQueues runs the forwarder on 2-queue veths with a
// generator thread per queue: both of In's queues receive and forward.
func TestForwardsTwoQueues(t *testing.T) {
	if why := bench.Supported(); why != "" {
		t.Skip(why)
	}
	if why := afxdp.Supported(); why != "" {
		t.Skip(why)
	}
	if runtime.NumCPU() < 2 {
		t.Skip("needs 2 CPUs")
	}
	d := &DUT{Queues: 2}
	r, err := bench.Run(context.Background(), bench.Scenario{
		Name: "two-queues", Warmup: 300 * time.Millisecond, Duration: 700 * time.Millisecond,
		GenCPUs: []int{0, 1}, DUTCPUs: []int{0, 1}, Queues: 2, Check: bench.NoneTagged,
	}, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if len(d.Stats) != 4 {
		t.Fatalf("%d ports, want 4 (2 queues × in, out)", len(d.Stats))
	}
	for q := range 2 {
		if d.Stats[q].RxPackets == 0 || d.Stats[2+q].TxPackets == 0 {
			t.Errorf("queue %d: in %+v, out %+v", q, d.Stats[q], d.Stats[2+q])
		}
	}
}
