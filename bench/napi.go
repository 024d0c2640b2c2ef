package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/internal/netlab"
)

// ThreadNAPI switches interface iface of namespace ns to threaded NAPI and
// pins the new NAPI kernel threads ("napi/<iface>-<id>") to cpus. The
// interface must have NAPI already (an XDP program attached). Its receive
// path then runs on cpus instead of in the softirq of whichever CPU handed it
// the frames — on a veth, the sender's.
func ThreadNAPI(ns, iface string, cpus []int) error {
	prefix := "napi/" + iface + "-"
	before := napiThreads(prefix)
	if _, err := netlab.Exec(ns, "sh", "-c", fmt.Sprintf("echo 1 > /sys/class/net/%s/threaded", iface)); err != nil {
		return err
	}
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var fresh []int
		for pid := range napiThreads(prefix) {
			if !before[pid] {
				fresh = append(fresh, pid)
			}
		}
		if len(fresh) == 0 {
			continue
		}
		for _, pid := range fresh {
			if err := unix.SchedSetaffinity(pid, &set); err != nil {
				return fmt.Errorf("bench: pin NAPI thread %d of %s to %v: %w", pid, iface, cpus, err)
			}
		}
		return nil
	}
	return fmt.Errorf("bench: no NAPI thread appeared for %s", iface)
}

// napiThreads returns the pids of the threads whose name starts with prefix.
func napiThreads(prefix string) map[int]bool {
	m := map[int]bool{}
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, c := range comms {
		b, err := os.ReadFile(c)
		if err != nil || !strings.HasPrefix(string(b), prefix) {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(c))); err == nil {
			m[pid] = true
		}
	}
	return m
}
