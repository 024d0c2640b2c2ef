package harness

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/psavd/psavd/bench"
	"github.com/psavd/psavd/internal/netlab"
)

// observer is the bench.Observer of one measurement: it sends latency
// probes from the generator's namespace while the load runs, receives them
// behind the sink with kernel timestamps, and reads the DUT's CPU time at
// the edges of the window.
type observer struct {
	rate    int    // probes per second; 0: none
	probe   []byte // template (its trailer is rewritten per send)
	pid     func() int
	dutCPUs []int

	sendFD, recvFD int
	cancel         context.CancelFunc
	wg             sync.WaitGroup

	mu         sync.Mutex
	seq        uint32 // next sequence number
	winFrom    uint32 // first sequence number sent in the window
	winTo      uint32 // first sequence number sent after the window
	inWindow   bool
	rtt        map[uint32]time.Duration // one-way delay by sequence number
	procStart  procTimes
	procEnd    procTimes
	coresStart procTimes
	coresEnd   procTimes
	errs       []error
}

// procTimes is CPU time in clock ticks (USER_HZ, 100 per second on Linux).
type procTimes struct {
	ticks uint64
	ok    bool
}

const userHZ = 100

// observation is what an observer measured over the window.
type observation struct {
	ProbesSent, ProbesReceived int
	Latency                    []time.Duration // of the probes sent in the window that arrived
	ProcCPU                    time.Duration   // the DUT process's utime+stime; -1 without a process
	CoresBusy                  time.Duration   // non-idle time of the DUT's CPUs (/proc/stat)
}

var _ bench.Observer = (*observer)(nil)

func newObserver(rate int, probe []byte, pid func() int, dutCPUs []int) *observer {
	return &observer{rate: rate, probe: probe, pid: pid, dutCPUs: dutCPUs, sendFD: -1, recvFD: -1,
		rtt: map[uint32]time.Duration{}}
}

func (o *observer) Start(ctx context.Context, genNS, sinkNS string) error {
	if o.rate == 0 {
		return nil
	}
	var err error
	if o.recvFD, err = packetSocket(sinkNS, bench.SinkIf, true); err != nil {
		return err
	}
	if o.sendFD, err = packetSocket(genNS, bench.GenIf, false); err != nil {
		return err
	}
	pctx, cancel := context.WithCancel(ctx)
	o.cancel = cancel
	o.wg.Add(2)
	go func() { defer o.wg.Done(); o.receive(pctx) }()
	go func() { defer o.wg.Done(); o.send(pctx) }()
	return nil
}

// packetSocket opens an AF_PACKET socket on iface in namespace ns (for
// receiving: with nanosecond kernel timestamps and a 0.1 s read timeout).
func packetSocket(ns, iface string, recv bool) (int, error) {
	fd := -1
	err := netlab.Do(ns, func() error {
		idx, err := ifindex(iface)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		if !recv {
			proto = 0 // send only: no copy of every frame on the way
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("harness: packet socket: %w", err)
		}
		if recv {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
				return fmt.Errorf("harness: SO_TIMESTAMPNS: %w", err)
			}
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
			tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
			if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
				return err
			}
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: idx})
	})
	if err != nil && fd >= 0 {
		unix.Close(fd)
		fd = -1
	}
	return fd, err
}

func ifindex(name string) (int, error) {
	ifc, err := net.InterfaceByName(name) // netlink: the thread's namespace
	if err != nil {
		return 0, fmt.Errorf("harness: interface %s: %w", name, err)
	}
	return ifc.Index, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// send paces probes at o.rate: every millisecond the ones due.
func (o *observer) send(ctx context.Context) {
	f := append([]byte(nil), o.probe...)
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		due := int64(time.Since(start).Seconds()*float64(o.rate)) - sent
		for ; due > 0; due-- {
			o.mu.Lock()
			seq := o.seq
			o.seq++
			o.mu.Unlock()
			putTrailer(f, seq, time.Now().UnixNano())
			if _, err := unix.Write(o.sendFD, f); err != nil && !errors.Is(err, unix.ENOBUFS) {
				o.fail(fmt.Errorf("harness: send probe: %w", err))
				return
			}
			sent++
		}
	}
}

// receive reads probes and their kernel receive timestamps.
func (o *observer) receive(ctx context.Context) {
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	for ctx.Err() == nil {
		n, oobn, _, _, err := unix.Recvmsg(o.recvFD, buf, oob, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			o.fail(fmt.Errorf("harness: receive probe: %w", err))
			return
		}
		seq, sent, ok := readTrailer(buf[:n])
		if !ok {
			continue
		}
		at, ok := rxTime(oob[:oobn])
		if !ok {
			o.fail(errors.New("harness: a probe came without a kernel timestamp"))
			return
		}
		o.mu.Lock()
		o.rtt[seq] = time.Duration(at - sent)
		o.mu.Unlock()
	}
}

func rxTime(oob []byte) (int64, bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0, false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS && len(m.Data) >= 16 {
			// struct timespec on 64-bit Linux: two native 64-bit words.
			sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
			nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
			return sec*1e9 + nsec, true
		}
	}
	return 0, false
}

func (o *observer) fail(err error) {
	o.mu.Lock()
	o.errs = append(o.errs, err)
	o.mu.Unlock()
}

func (o *observer) Window(end bool) {
	proc := o.readProc()
	cores := readCores(o.dutCPUs)
	o.mu.Lock()
	defer o.mu.Unlock()
	if !end {
		o.winFrom, o.inWindow = o.seq, true
		o.procStart, o.coresStart = proc, cores
		return
	}
	o.winTo, o.inWindow = o.seq, false
	o.procEnd, o.coresEnd = proc, cores
}

func (o *observer) readProc() procTimes {
	if o.pid == nil {
		return procTimes{}
	}
	pid := o.pid()
	if pid == 0 {
		return procTimes{}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procTimes{}
	}
	t, ok := parseProcStat(string(b))
	return procTimes{t, ok}
}

// parseProcStat returns utime+stime from the text of /proc/<pid>/stat
// (fields 14 and 15; the command name, field 2, may hold spaces and
// parentheses, so fields are counted after its last ')').
func parseProcStat(s string) (uint64, bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return u + st, true
}

// readCores returns the non-idle ticks of cpus from /proc/stat.
func readCores(cpus []int) procTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil || len(cpus) == 0 {
		return procTimes{}
	}
	t, ok := parseCPUBusy(string(b), cpus)
	return procTimes{t, ok}
}

// parseCPUBusy sums, over the "cpuN" lines of /proc/stat for N in cpus,
// every time but idle and iowait.
func parseCPUBusy(s string, cpus []int) (uint64, bool) {
	var sum uint64
	found := 0
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil || !containsInt(cpus, n) {
			continue
		}
		for k, v := range f[1:] {
			if k == 3 || k == 4 || k >= 8 { // idle, iowait; guest times are in user already
				continue
			}
			x, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, false
			}
			sum += x
		}
		found++
	}
	return sum, found == len(cpus)
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (o *observer) Stop() error {
	if o.cancel != nil {
		o.cancel()
	}
	o.wg.Wait()
	for _, fd := range []int{o.sendFD, o.recvFD} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	o.sendFD, o.recvFD = -1, -1
	o.mu.Lock()
	defer o.mu.Unlock()
	return errors.Join(o.errs...)
}

// result is the observation over the window (after Stop).
func (o *observer) result() observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := observation{ProbesSent: int(o.winTo - o.winFrom), ProcCPU: -1}
	for seq := o.winFrom; seq != o.winTo; seq++ {
		if d, ok := o.rtt[seq]; ok {
			r.Latency = append(r.Latency, d)
		}
	}
	r.ProbesReceived = len(r.Latency)
	if o.procStart.ok && o.procEnd.ok {
		r.ProcCPU = time.Duration(o.procEnd.ticks-o.procStart.ticks) * time.Second / userHZ
	}
	if o.coresStart.ok && o.coresEnd.ok {
		r.CoresBusy = time.Duration(o.coresEnd.ticks-o.coresStart.ticks) * time.Second / userHZ
	}
	return r
}
