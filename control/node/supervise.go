package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Policy says what the supervisor does when a role's Run returns an error
// before the node is stopped.
type Policy int

const (
	// Restart runs the role again after a back-off that doubles from
	// MinBackoff up to MaxBackoff (reset once the role has run for
	// MaxBackoff without failing). For roles whose failure is transient: a
	// feed from a remote ACS, a socket that can be opened again.
	Restart Policy = iota
	// Fatal stops the whole node with the role's error: the process exits
	// non-zero naming the role and the cause. For roles the node is useless
	// without, such as the poll loops of an ABR.
	Fatal
)

func (p Policy) String() string {
	if p == Fatal {
		return "fatal"
	}
	return "restart"
}

// Back-off bounds of Restart.
const (
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 30 * time.Second
)

// A Role is one long-lived part of a node. Run blocks until ctx is done
// (then it returns nil or ctx's error) or until the role fails. Ready, when
// the role has one, is called once the role serves (a socket bound, the
// loops polling); a role without readiness is ready as soon as it runs.
type Role struct {
	Name   string
	Policy Policy
	Run    func(ctx context.Context, ready func()) error
}

// ErrRoleStopped is wrapped by the error of a role that returned nil while
// the node was still running: a role may not end on its own.
var ErrRoleStopped = errors.New("returned while the node runs")

// RoleError is the error Supervise returns when a Fatal role failed.
type RoleError struct {
	Role string
	Err  error
}

func (e *RoleError) Error() string { return fmt.Sprintf("role %s failed: %v", e.Role, e.Err) }
func (e *RoleError) Unwrap() error { return e.Err }

// Supervisor runs roles, each in its own goroutine — the one place the
// node's control-plane goroutines are started — restarts or stops on
// failure by each role's policy, and knows at any moment whether every role
// is up and ready. It is the node's readiness: a role that died is never
// reported ready.
type Supervisor struct {
	log *zap.Logger

	mu       sync.Mutex
	state    map[string]*roleState
	order    []string
	cancelFn map[string]context.CancelFunc // per role, for Stop
	wg       sync.WaitGroup
	fatal    chan error
	failed   []string // roles that failed fatally: the node is stopping, never ready again
	ctx      context.Context

	upDesc, restartsDesc *prometheus.Desc
}

type roleState struct {
	policy   Policy
	done     chan struct{} // closed when the role's goroutine ends
	up       bool          // running and ready
	restarts uint64
	lastErr  error
}

// NewSupervisor returns a supervisor that logs to log.
func NewSupervisor(log *zap.Logger) *Supervisor {
	return &Supervisor{
		log:      log,
		state:    map[string]*roleState{},
		cancelFn: map[string]context.CancelFunc{},
		fatal:    make(chan error, 1),
		upDesc: prometheus.NewDesc("psavd_role_up",
			"1 while the role runs and is ready, 0 while it is down or restarting.", []string{"role"}, nil),
		restartsDesc: prometheus.NewDesc("psavd_role_restarts_total",
			"Times the role failed and was started again.", []string{"role"}, nil),
	}
}

// Start runs the roles under ctx. It may be called again (a reload adds
// roles); names must be unique among running roles.
func (s *Supervisor) Start(ctx context.Context, roles ...Role) {
	s.mu.Lock()
	if s.ctx == nil {
		s.ctx = ctx
	}
	s.mu.Unlock()
	for _, r := range roles {
		rctx, cancel := context.WithCancel(ctx)
		s.mu.Lock()
		if _, dup := s.state[r.Name]; dup {
			s.mu.Unlock()
			cancel()
			s.fail(&RoleError{Role: r.Name, Err: errors.New("started twice")})
			continue
		}
		st := &roleState{policy: r.Policy, done: make(chan struct{})}
		s.state[r.Name] = st
		s.order = append(s.order, r.Name)
		s.cancelFn[r.Name] = cancel
		s.mu.Unlock()
		s.wg.Add(1)
		go s.run(rctx, r, st.done)
	}
}

// Stop ends one role (a reload that removes it) and waits until its Run
// has returned. Stopping a role that is not running does nothing.
func (s *Supervisor) Stop(name string) {
	s.mu.Lock()
	cancel := s.cancelFn[name]
	var done chan struct{}
	if st := s.state[name]; st != nil {
		done = st.done
	}
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (s *Supervisor) run(ctx context.Context, r Role, done chan struct{}) {
	defer s.wg.Done()
	defer close(done)
	defer func() {
		s.mu.Lock()
		delete(s.state, r.Name)
		delete(s.cancelFn, r.Name)
		for i, n := range s.order {
			if n == r.Name {
				s.order = append(s.order[:i], s.order[i+1:]...)
				break
			}
		}
		s.mu.Unlock()
	}()
	backoff := MinBackoff
	for {
		started := time.Now()
		err := s.runOnce(ctx, r)
		s.setUp(r.Name, false, err)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = ErrRoleStopped
		}
		if r.Policy == Fatal {
			s.log.Error("role failed; stopping the node", zap.String("role", r.Name), zap.Error(err))
			s.mu.Lock()
			s.failed = append(s.failed, r.Name)
			s.mu.Unlock()
			s.fail(&RoleError{Role: r.Name, Err: err})
			return
		}
		if time.Since(started) > MaxBackoff {
			backoff = MinBackoff
		}
		s.log.Warn("role failed; restarting", zap.String("role", r.Name), zap.Error(err), zap.Duration("after", backoff))
		s.mu.Lock()
		if st := s.state[r.Name]; st != nil {
			st.restarts++
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, MaxBackoff)
	}
}

// runOnce runs the role once, turning a panic into an error: a bug in one
// role must not take the data plane down with it.
func (s *Supervisor) runOnce(ctx context.Context, r Role) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return r.Run(ctx, func() { s.setUp(r.Name, true, nil) })
}

func (s *Supervisor) setUp(name string, up bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.state[name]; st != nil {
		st.up = up
		if err != nil {
			st.lastErr = err
		}
	}
}

func (s *Supervisor) fail(err error) {
	select {
	case s.fatal <- err:
	default: // the first fatal error stops the node; later ones are logged
	}
}

// Failed yields the first fatal role error.
func (s *Supervisor) Failed() <-chan error { return s.fatal }

// Wait blocks until every role has returned (after ctx is done).
func (s *Supervisor) Wait() { s.wg.Wait() }

// Ready reports whether every running role is up and ready, and names the
// ones that are not.
func (s *Supervisor) Ready() (bool, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	down := append([]string(nil), s.failed...)
	for _, n := range s.order {
		if !s.state[n].up {
			down = append(down, n)
		}
	}
	return len(down) == 0 && len(s.order) > 0, down
}

// Roles returns each running role's name, whether it is up and its restart
// count, sorted by name.
func (s *Supervisor) Roles() []RoleStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RoleStatus, 0, len(s.state))
	for n, st := range s.state {
		rs := RoleStatus{Name: n, Policy: st.policy, Up: st.up, Restarts: st.restarts}
		if st.lastErr != nil {
			rs.LastError = st.lastErr.Error()
		}
		out = append(out, rs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// RoleStatus is one role as the supervisor sees it.
type RoleStatus struct {
	Name      string
	Policy    Policy
	Up        bool
	Restarts  uint64
	LastError string
}

// Describe implements prometheus.Collector.
func (s *Supervisor) Describe(ch chan<- *prometheus.Desc) {
	ch <- s.upDesc
	ch <- s.restartsDesc
}

// Collect implements prometheus.Collector.
func (s *Supervisor) Collect(ch chan<- prometheus.Metric) {
	for _, r := range s.Roles() {
		up := 0.0
		if r.Up {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(s.upDesc, prometheus.GaugeValue, up, r.Name)
		ch <- prometheus.MustNewConstMetric(s.restartsDesc, prometheus.CounterValue, float64(r.Restarts), r.Name)
	}
}
