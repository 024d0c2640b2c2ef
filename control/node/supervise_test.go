package node

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// waitFor polls cond (no timing assertion: a generous bound only stops a
// hung test).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSupervisorRestartsFailingRole(t *testing.T) {
	s := NewSupervisor(zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs atomic.Int32
	fail := make(chan struct{}, 1)
	s.Start(ctx, Role{Name: "flaky", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
		runs.Add(1)
		ready()
		select {
		case <-ctx.Done():
			return nil
		case <-fail:
			return errors.New("socket closed")
		}
	}})
	waitUntil(t, "first run ready", func() bool { ok, _ := s.Ready(); return ok })
	fail <- struct{}{}
	waitUntil(t, "restart", func() bool { return runs.Load() == 2 })
	waitUntil(t, "ready again", func() bool { ok, _ := s.Ready(); return ok })
	if r := s.Roles(); len(r) != 1 || r[0].Restarts != 1 || !strings.Contains(r[0].LastError, "socket closed") {
		t.Fatalf("roles = %+v", r)
	}
	cancel()
	s.Wait()
	select {
	case err := <-s.Failed():
		t.Fatalf("a restartable role stopped the node: %v", err)
	default:
	}
}

func TestSupervisorFatalRoleStopsNode(t *testing.T) {
	s := NewSupervisor(zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx,
		Role{Name: "loops", Policy: Fatal, Run: func(ctx context.Context, ready func()) error {
			return errors.New("port gone")
		}},
		Role{Name: "other", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
			ready()
			<-ctx.Done()
			return nil
		}})
	var err error
	select {
	case err = <-s.Failed():
	case <-time.After(20 * time.Second):
		t.Fatal("fatal role did not stop the node")
	}
	var re *RoleError
	if !errors.As(err, &re) || re.Role != "loops" || !strings.Contains(err.Error(), "port gone") {
		t.Fatalf("err = %v", err)
	}
	if ok, down := s.Ready(); ok {
		t.Fatalf("ready with a dead role (down %v)", down)
	}
	cancel()
	s.Wait()
}

func TestSupervisorNotReadyWhileRoleDown(t *testing.T) {
	s := NewSupervisor(zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	release := make(chan struct{})
	s.Start(ctx, Role{Name: "slow", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
		<-release
		ready()
		<-ctx.Done()
		return nil
	}})
	if ok, down := s.Ready(); ok || len(down) != 1 || down[0] != "slow" {
		t.Fatalf("ready before the role said so: %v %v", ok, down)
	}
	close(release)
	waitUntil(t, "ready", func() bool { ok, _ := s.Ready(); return ok })
}

func TestSupervisorPanicIsAFailure(t *testing.T) {
	s := NewSupervisor(zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx, Role{Name: "buggy", Policy: Fatal, Run: func(ctx context.Context, ready func()) error {
		var roles []Role
		_ = roles[len(roles)] // index out of range: a bug in a role
		return nil
	}})
	select {
	case err := <-s.Failed():
		if !strings.Contains(err.Error(), "panic") {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("panicking role did not stop the node")
	}
	cancel()
	s.Wait()
}

func TestSupervisorStopRole(t *testing.T) {
	s := NewSupervisor(zap.NewNop())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx, Role{Name: "removable", Policy: Restart, Run: func(ctx context.Context, ready func()) error {
		ready()
		<-ctx.Done()
		return nil
	}})
	waitUntil(t, "ready", func() bool { ok, _ := s.Ready(); return ok })
	s.Stop("removable")
	if r := s.Roles(); len(r) != 0 {
		t.Fatalf("roles after Stop: %+v", r)
	}
}
