package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/psavd/psavd/bench/gen"
	"github.com/psavd/psavd/internal/netlab"
)

// PassXDP attaches an XDP program that passes every frame to the kernel to
// iface in namespace ns. On a veth it turns on the NAPI receive path, which
// the veth needs to accept frames its peer transmits by XDP (the
// generator's). Close the returned link to detach it.
func PassXDP(ns, iface string) (link.Link, error) {
	p, err := gen.NewPassProgram()
	if err != nil {
		return nil, err
	}
	defer p.Close() // the link keeps the program alive
	return gen.AttachXDP(ns, iface, p)
}

// KernelForward is Linux's own IP forwarding in the middle namespace: the
// baseline showing the generator outruns a forwarder. In gets
// 198.51.100.1/24 and 2001:db8:1::1/64, Out 203.0.113.1/24 and
// 2001:db8:2::1/64, the destinations 203.0.113.10 and 2001:db8:2::10 are
// static neighbours at the sink's MAC. An XDP_PASS program on In lets the
// veth take the generator's frames, and RPS moves their processing
// (forwarding and the sink's veth receive) from the generator's CPU, where
// In's receive path runs, to env.CPUs.
type KernelForward struct {
	l link.Link
}

func (k *KernelForward) Name() string { return "kernel-forward" }

func (k *KernelForward) Start(ctx context.Context, env Env) error {
	ns := env.NS
	if _, err := netlab.Exec(ns, "sysctl", "-qw",
		"net.ipv4.ip_forward=1",
		"net.ipv4.conf.all.rp_filter=0",
		"net.ipv4.conf."+env.In+".rp_filter=0",
		"net.ipv6.conf.all.forwarding=1",
		"net.ipv6.conf."+env.In+".disable_ipv6=0",
		"net.ipv6.conf."+env.Out+".disable_ipv6=0"); err != nil {
		return err
	}
	cmds := [][]string{
		{"-n", ns, "addr", "add", "198.51.100.1/24", "dev", env.In},
		{"-n", ns, "addr", "add", "2001:db8:1::1/64", "dev", env.In, "nodad"},
		{"-n", ns, "addr", "add", "203.0.113.1/24", "dev", env.Out},
		{"-n", ns, "addr", "add", "2001:db8:2::1/64", "dev", env.Out, "nodad"},
		{"-n", ns, "neigh", "replace", gen.OutsideV4.String(), "lladdr", env.SinkMAC.String(), "dev", env.Out, "nud", "permanent"},
		{"-n", ns, "neigh", "replace", gen.OutsideV6.String(), "lladdr", env.SinkMAC.String(), "dev", env.Out, "nud", "permanent"},
	}
	for _, c := range cmds {
		if err := netlab.IP(c...); err != nil {
			return err
		}
	}
	if len(env.CPUs) > 0 {
		var mask uint64
		for _, c := range env.CPUs {
			mask |= 1 << c
		}
		if _, err := netlab.Exec(ns, "sh", "-c",
			fmt.Sprintf("for q in /sys/class/net/%s/queues/rx-*; do echo %x > $q/rps_cpus; done", env.In, mask)); err != nil {
			return err
		}
	}
	var err error
	k.l, err = PassXDP(ns, env.In)
	return err
}

func (k *KernelForward) Stop() error {
	if k.l == nil {
		return nil
	}
	err := k.l.Close()
	k.l = nil
	return err
}

// XDPRedirect forwards in the kernel with an XDP program on In that
// redirects every frame to Out: the fastest forwarder there is on veths, an
// upper bound for the AF_XDP ones. All of it runs on the generator's CPU
// (In's receive path) and in the sink's NAPI.
type XDPRedirect struct {
	l link.Link
}

func (x *XDPRedirect) Name() string { return "xdp-redirect" }

func (x *XDPRedirect) Start(ctx context.Context, env Env) error {
	out, err := gen.Ifindex(env.NS, env.Out)
	if err != nil {
		return err
	}
	p, err := gen.NewRedirectProgram(out)
	if err != nil {
		return err
	}
	defer p.Close()
	x.l, err = gen.AttachXDP(env.NS, env.In, p)
	return err
}

func (x *XDPRedirect) Stop() error {
	if x.l == nil {
		return nil
	}
	err := x.l.Close()
	x.l = nil
	return err
}

// Func adapts a pair of functions to a DUT, for forwarders run inside the
// benchmark's own process (open their sockets inside env.NS with
// netlab.Do; the sockets stay bound to it).
type Func struct {
	Label string
	// StartFunc brings the DUT up and returns the function that stops it.
	StartFunc func(ctx context.Context, env Env) (stop func() error, err error)

	stop func() error
}

func (f *Func) Name() string { return f.Label }

func (f *Func) Start(ctx context.Context, env Env) error {
	stop, err := f.StartFunc(ctx, env)
	f.stop = stop
	return err
}

func (f *Func) Stop() error {
	if f.stop == nil {
		return nil
	}
	err := f.stop()
	f.stop = nil
	return err
}

// Command runs a DUT as a separate process inside the middle namespace
// (`ip netns exec NS argv...`), e.g. `psavd -config engine.toml`.
type Command struct {
	Label string
	// Argv returns the command line for env (writing any configuration
	// file it needs first).
	Argv func(env Env) ([]string, error)
	// Ready is a string that the process prints (stdout or stderr) once it
	// forwards, e.g. psavd's "ready"; "" means wait Settle instead.
	Ready string
	// Settle is the time to wait after Ready (default 0), or after the
	// start when Ready is "" (default 1 s).
	Settle time.Duration
	// Output, if set, receives a copy of the process's output.
	Output io.Writer

	cmd     *exec.Cmd
	done    chan error
	readers chan struct{} // closed when all output is read
	mu      sync.Mutex
	log     []byte // the last 64 KiB of output
}

// Log returns the last 64 KiB of the process's output (after Stop: all of
// its last words, e.g. psavd's counters).
func (c *Command) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.log)
}

func (c *Command) Name() string { return c.Label }

// Pid is the process's id while it runs (0 before Start and after Stop):
// `ip netns exec` execs the command, so it is the DUT's own, e.g. for its
// CPU time in /proc/<pid>/stat.
func (c *Command) Pid() int {
	if c.cmd == nil || c.cmd.Process == nil {
		return 0
	}
	return c.cmd.Process.Pid
}

func (c *Command) Start(ctx context.Context, env Env) error {
	argv, err := c.Argv(env)
	if err != nil {
		return err
	}
	if len(argv) == 0 {
		return errors.New("bench: empty command")
	}
	c.cmd = exec.Command("ip", append([]string{"netns", "exec", env.NS}, argv...)...)
	pr, pw := io.Pipe()
	c.cmd.Stdout, c.cmd.Stderr = pw, pw
	if err := c.cmd.Start(); err != nil {
		c.cmd = nil
		return err
	}
	c.done = make(chan error, 1)
	go func() {
		err := c.cmd.Wait()
		pw.Close()
		c.done <- err
	}()

	ready := make(chan struct{})
	var once sync.Once
	c.mu.Lock()
	c.log = c.log[:0]
	c.mu.Unlock()
	c.readers = make(chan struct{})
	go func() {
		defer close(c.readers)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if c.Output != nil {
				fmt.Fprintln(c.Output, line)
			}
			c.mu.Lock()
			c.log = append(c.log, line...)
			c.log = append(c.log, '\n')
			if n := len(c.log); n > 64<<10 {
				c.log = append(c.log[:0], c.log[n-64<<10:]...)
			}
			c.mu.Unlock()
			if c.Ready != "" && strings.Contains(line, c.Ready) {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(io.Discard, pr)
	}()
	settle := c.Settle
	if c.Ready == "" {
		if settle == 0 {
			settle = time.Second
		}
		once.Do(func() { close(ready) })
	}
	select {
	case <-ready:
	case err := <-c.done:
		c.done <- err
		<-c.readers
		return fmt.Errorf("bench: %s exited before it was ready (%v):\n%s", c.Label, err, c.Log())
	case <-ctx.Done():
		return fmt.Errorf("bench: %s not ready: %w", c.Label, ctx.Err())
	}
	return sleep(ctx, settle)
}

// Stop sends SIGTERM, and SIGKILL if the process has not left 10 s later.
func (c *Command) Stop() error {
	if c.cmd == nil {
		return nil
	}
	defer func() { c.cmd = nil }()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		<-c.readers
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ProcessState.Sys().(syscall.WaitStatus).Signaled() {
			return nil // stopped by our signal, as asked
		}
		return err
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		<-c.readers
		return fmt.Errorf("bench: %s ignored SIGTERM, killed", c.Label)
	}
}
