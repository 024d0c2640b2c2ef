// Package netlab builds throw-away network topologies out of Linux network
// namespaces and veth pairs, for the lab, the integration tests and the
// benchmarks. Every namespace gets a unique name (a per-topology random tag),
// and Close deletes exactly the namespaces this topology created — deleting a
// namespace also deletes the veth ends inside it — so a run never touches
// anything it did not make, and cleans up after itself on failure too.
package netlab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"github.com/psavd/psavd/internal/testtool"

	"github.com/vishvananda/netns"
)

// Topology is a set of namespaces made by one run.
type Topology struct {
	Tag string // random, unique per topology; part of every namespace name

	mu  sync.Mutex
	nss []string // full names, in creation order
}

// Supported reports why namespaces cannot be built here ("" when they can):
// tests call it to skip cleanly on machines without root or iproute2.
func Supported() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces)"
	}
	if _, ok := testtool.Find("ip"); !ok {
		return "needs iproute2 (ip)"
	}
	return ""
}

// New returns an empty topology with a fresh random tag.
func New() *Topology {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return &Topology{Tag: hex.EncodeToString(b[:])}
}

// NS creates a namespace for the role name (e.g. "h1") and returns its full
// name, "psv<tag>-<name>". Loopback is brought up.
func (t *Topology) NS(name string) (string, error) {
	full := "psv" + t.Tag + "-" + name
	if err := IP("netns", "add", full); err != nil {
		return "", err
	}
	t.mu.Lock()
	t.nss = append(t.nss, full)
	t.mu.Unlock()
	if err := IP("-n", full, "link", "set", "lo", "up"); err != nil {
		return "", err
	}
	return full, nil
}

// Veth creates a veth pair with one end (ifA) in namespace nsA and the other
// (ifB) in nsB, both up. Optional MACs (may be "") make frames predictable.
func (t *Topology) Veth(nsA, ifA, macA, nsB, ifB, macB string) error {
	args := []string{"link", "add", "name", ifA, "netns", nsA}
	if macA != "" {
		args = append(args, "address", macA)
	}
	args = append(args, "type", "veth", "peer", "name", ifB, "netns", nsB)
	if macB != "" {
		args = append(args, "address", macB)
	}
	if err := IP(args...); err != nil {
		return err
	}
	if err := IP("-n", nsA, "link", "set", ifA, "up"); err != nil {
		return err
	}
	return IP("-n", nsB, "link", "set", ifB, "up")
}

// Names returns the namespaces created so far.
func (t *Topology) Names() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.nss...)
}

// Close deletes every namespace of this topology (newest first) and returns
// the first error. Processes still running inside must be stopped first;
// their veths disappear with the namespace.
func (t *Topology) Close() error {
	t.mu.Lock()
	nss := t.nss
	t.nss = nil
	t.mu.Unlock()
	var first error
	for i := len(nss) - 1; i >= 0; i-- {
		if err := IP("netns", "del", nss[i]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// IP runs the ip(8) command and returns its error with stderr included.
func IP(args ...string) error {
	_, err := Run("ip", args...)
	return err
}

// Exec runs a command inside namespace ns and returns its standard output.
func Exec(ns string, name string, args ...string) (string, error) {
	return Run("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Run runs a command and returns its standard output; the error names the
// command and carries its standard error.
func Run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Do runs fn on an OS thread switched into namespace ns. File descriptors
// (sockets) opened by fn stay bound to ns after Do returns, so a test can
// open an AF_PACKET or AF_XDP socket inside a namespace and use it from any
// goroutine.
func Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is locked and never unlocked: if switching back fails
		// the thread dies with the goroutine instead of returning to the pool
		// in the wrong namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leave namespace %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
