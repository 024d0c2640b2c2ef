package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/netlab"
)

func skipUnlessSupported(t *testing.T) {
	t.Helper()
	if why := Supported(); why != "" {
		t.Skip(why)
	}
}

// short is a scenario quick enough for a unit test; the rates it measures
// are not asserted (the machine may be busy), only that frames flow and
// that the accounting adds up.
func short() Scenario {
	return Scenario{Name: "short", Warmup: 200 * time.Millisecond, Duration: 500 * time.Millisecond}
}

func TestRunDirect(t *testing.T) {
	skipUnlessSupported(t)
	sc := short()
	sc.Check = NoneTagged
	r, err := Run(context.Background(), sc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if r.DUT != "direct" || r.Delivered.Total() == 0 || r.Delivered.Other != 0 {
		t.Fatalf("unexpected result %v", r)
	}
	// Both templates arrive, in turn.
	if d, bound := int64(r.Delivered.IPv4)-int64(r.Delivered.IPv6), int64(r.Delivered.Total()/50)+1000; d < -bound || d > bound {
		t.Errorf("IPv4 and IPv6 not in turn: %v", r.Delivered)
	}
	// The accounting adds up: generated and delivered agree but for the
	// frames in flight between the two counters' snapshots at the window's
	// edges, which depends on how quickly the snapshots follow each other on
	// a busy machine — so the bound is relative. (That nothing is lost on a
	// veth is tested exactly in bench/gen: K frames sent, K counted.)
	if l, bound := r.Loss(), int64(r.Generated/50)+1024; l < -bound || l > bound {
		t.Errorf("loss %d of %d generated on a direct veth", l, r.Generated)
	}
}

func TestRunBaselines(t *testing.T) {
	skipUnlessSupported(t)
	for _, dut := range []DUT{&KernelForward{}, &XDPRedirect{}} {
		t.Run(dut.Name(), func(t *testing.T) {
			sc := short()
			sc.Check = NoneTagged
			r, err := Run(context.Background(), sc, dut)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(r)
			if r.Delivered.IPv4 == 0 || r.Delivered.IPv6 == 0 {
				t.Fatalf("%s did not forward both families: %v", dut.Name(), r.Delivered)
			}
			if r.Loss() < -(int64(r.Generated/50) + 1024) {
				t.Errorf("delivered more than generated: %v", r)
			}
		})
	}
}

// A DUT that attaches nothing to In: the generator's frames are lost at
// the veth, the run reports it instead of failing.
func TestRunNothingForwarded(t *testing.T) {
	skipUnlessSupported(t)
	idle := &Func{Label: "idle", StartFunc: func(context.Context, Env) (func() error, error) {
		return func() error { return nil }, nil
	}}
	r, err := Run(context.Background(), short(), idle)
	if err != nil {
		t.Fatal(err)
	}
	if r.Delivered.Total() != 0 || r.Generated == 0 || r.LossRatio() != 1 {
		t.Fatalf("unexpected result %v", r)
	}
	sc := short()
	sc.Check = NoneTagged
	if _, err := Run(context.Background(), sc, idle); err == nil || !strings.Contains(err.Error(), "nothing delivered") {
		t.Fatalf("check did not fail: %v", err)
	}
}

func TestCommand(t *testing.T) {
	if why := netlab.Supported(); why != "" {
		t.Skip(why)
	}
	topo := netlab.New()
	t.Cleanup(func() { topo.Close() })
	ns, err := topo.NS("cmd")
	if err != nil {
		t.Fatal(err)
	}
	env := Env{NS: ns, In: "x", Out: "y"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	c := &Command{Label: "sh", Ready: "ready", Argv: func(e Env) ([]string, error) {
		return []string{"sh", "-c", "echo starting " + e.In + " " + e.Out + "; echo ready; exec sleep 60"}, nil
	}}
	if err := c.Start(ctx, env); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	bad := &Command{Label: "false", Ready: "ready", Argv: func(Env) ([]string, error) {
		return []string{"sh", "-c", "echo config is wrong >&2; exit 2"}, nil
	}}
	err = bad.Start(ctx, env)
	if err == nil || !strings.Contains(err.Error(), "config is wrong") {
		t.Fatalf("Start of a failing command: %v", err)
	}
	bad.Stop()
}

// The sink's receive path moved into a pinned NAPI thread still counts
// everything that reaches it.
func TestRunThreadedSink(t *testing.T) {
	skipUnlessSupported(t)
	sc := short()
	sc.SinkNAPICPUs = []int{0}
	sc.Check = NoneTagged
	r, err := Run(context.Background(), sc, &XDPRedirect{})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if r.Delivered.IPv4 == 0 || r.Delivered.IPv6 == 0 {
		t.Fatalf("nothing forwarded: %v", r)
	}
}
