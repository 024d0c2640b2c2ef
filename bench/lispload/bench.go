package lispload

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/oorpeer"
)

// Server names.
const (
	Psavd = "psavd"
	OOR   = "oor"
)

// Site the servers are configured with: 10.0.0.0/8 and more specifics,
// HMAC-SHA-1. Every server listens on serverAddr:4342 of a namespace of
// its own (a veth), the generator sends from the same namespace.
var (
	siteKey    = "msbench-site-secret"
	serverAddr = netip.MustParseAddr("10.78.0.1")
	eidBase    = netip.MustParseAddr("10.0.0.0")
)

// Options configure Bench.
type Options struct {
	Servers   []string // Psavd, OOR (in this order each round)
	Psavd     string   // psavd binary
	OORBin    string   // oor binary and its build directory (oorpeer.Build)
	OORDir    string
	WorkDir   string
	Table     int           // grow the table to this many registrations (default 1 M)
	Step      int           // new EIDs per growth round (default Table/10)
	Refreshes int           // Map-Registers per refresh round (default Step)
	Refresh   int           // refresh rounds once the table is full (default 3)
	Idle      time.Duration // idle CPU measured over this with the full table (default 10 s)
	Window    int           // in flight (default 64)
	Sources   int           // ETR addresses the generator sends from (default 1)
	Timeout   time.Duration // an answer missing this long is lost (default 1 s)
	Log       io.Writer     // progress, one line per round (may be nil)
}

// Result is one server's round.
type Result struct {
	Server  string
	Kind    string // "new" or "refresh"
	Round   Round
	CPU     time.Duration // the server's CPU time during the round
	Checked bool
}

// Report is what Bench measured.
type Report struct {
	Servers []string
	Rounds  [][]Result         // [round][server]
	IdleCPU map[string]float64 // share of one core while idle with the full table
	Idle    time.Duration
	Table   int
}

type server struct {
	name string
	ns   string
	pid  int
	gen  *Gen
	stop func()
}

// Bench builds the namespaces, starts each server, and runs the rounds
// alternately against them: growth rounds of Step new EIDs until Table,
// then Refresh rounds of refreshes; then it measures the servers' CPU use
// while idle. The namespaces and processes are gone when it returns.
func Bench(o Options) (*Report, error) {
	if o.Table <= 0 {
		o.Table = 1_000_000
	}
	if o.Step <= 0 {
		o.Step = max(o.Table/10, 1)
	}
	if o.Refreshes <= 0 {
		o.Refreshes = o.Step
	}
	if o.Refresh < 0 {
		o.Refresh = 0
	} else if o.Refresh == 0 {
		o.Refresh = 3
	}
	if o.Idle <= 0 {
		o.Idle = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if why := netlab.Supported(); why != "" {
		return nil, errors.New(why)
	}
	topo := netlab.New()
	defer topo.Close()
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.stop()
		}
	}()
	for _, name := range o.Servers {
		ns, err := topo.NS("ms" + name)
		if err != nil {
			return nil, err
		}
		// A veth pair inside the namespace gives OOR a non-loopback
		// control interface (no dummy module here); traffic to the local
		// address goes over lo either way.
		if err := topo.Veth(ns, "rloc", "", ns, "rpeer", ""); err != nil {
			return nil, err
		}
		if err := netlab.IP("-n", ns, "addr", "add", serverAddr.String()+"/24", "dev", "rloc"); err != nil {
			return nil, err
		}
		// More ETRs: further addresses beside the server's, each a
		// source of Map-Registers (Config.Sources).
		var sources []netip.Addr
		for i := range o.Sources {
			if o.Sources == 1 {
				break // the server's own address, as without Sources
			}
			a := netip.AddrFrom4([4]byte{10, 78, byte(1 + i/250), byte(1 + i%250)})
			if err := netlab.IP("-n", ns, "addr", "add", a.String()+"/32", "dev", "rloc"); err != nil {
				return nil, err
			}
			sources = append(sources, a)
		}
		s := &server{name: name, ns: ns}
		var err2 error
		switch name {
		case Psavd:
			err2 = startPsavd(s, o)
		case OOR:
			err2 = startOOR(s, o)
		default:
			err2 = fmt.Errorf("lispload: unknown server %q", name)
		}
		if err2 != nil {
			return nil, err2
		}
		servers = append(servers, s)
		if err := netlab.Do(ns, func() error {
			bind := &net.UDPAddr{IP: serverAddr.AsSlice()}
			if len(sources) > 0 {
				bind = &net.UDPAddr{} // answers come to every source address
			}
			c, err := net.ListenUDP("udp4", bind)
			if err != nil {
				return err
			}
			s.gen, err = New(Config{Conn: c, To: netip.AddrPortFrom(serverAddr, 4342), Key: []byte(siteKey),
				Base: eidBase, RLOC: serverAddr, Window: o.Window, Sources: sources})
			return err
		}); err != nil {
			return nil, err
		}
		if err := waitReady(s); err != nil {
			return nil, err
		}
	}
	rep := &Report{Servers: o.Servers, IdleCPU: map[string]float64{}, Idle: o.Idle, Table: o.Table}
	round := func(kind string, n int) error {
		var row []Result
		for _, s := range servers {
			// The others are stopped for the round: their own timers
			// (expiry, refreshes) take no CPU from the one measured.
			pause(servers, s, syscall.SIGSTOP)
			c0, err := cpuTime(s.pid)
			if err != nil {
				pause(servers, s, syscall.SIGCONT)
				return err
			}
			r, err := s.gen.Run(n, kind == "refresh", o.Timeout)
			pause(servers, s, syscall.SIGCONT)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			c1, err := cpuTime(s.pid)
			if err != nil {
				return err
			}
			row = append(row, Result{Server: s.name, Kind: kind, Round: r, CPU: c1 - c0})
			fmt.Fprintf(o.Log, "%-6s %-7s table %8d  %8.0f Map-Notifies/s  (sent %d, lost %d, %.2f s, server CPU %.2f s)\n",
				s.name, kind, r.Table, r.Rate(), r.Sent, r.Lost, r.Elapsed.Seconds(), (c1 - c0).Seconds())
		}
		rep.Rounds = append(rep.Rounds, row)
		return nil
	}
	for servers[0].gen.Table < o.Table {
		if err := round("new", min(o.Step, o.Table-servers[0].gen.Table)); err != nil {
			return rep, err
		}
	}
	for range o.Refresh {
		if err := round("refresh", o.Refreshes); err != nil {
			return rep, err
		}
	}
	// Idle: every server at once, nothing sent.
	start := map[string]time.Duration{}
	for _, s := range servers {
		c, err := cpuTime(s.pid)
		if err != nil {
			return rep, err
		}
		start[s.name] = c
	}
	t0 := time.Now()
	time.Sleep(o.Idle)
	el := time.Since(t0)
	for _, s := range servers {
		c, err := cpuTime(s.pid)
		if err != nil {
			return rep, err
		}
		rep.IdleCPU[s.name] = (c - start[s.name]).Seconds() / el.Seconds()
	}
	fmt.Fprintf(o.Log, "idle %.0f s with %d registrations: %v\n", el.Seconds(), o.Table, rep.IdleCPU)
	return rep, nil
}

// pause sends sig to the process group of every server but s.
func pause(servers []*server, s *server, sig syscall.Signal) {
	for _, o := range servers {
		if o != s {
			_ = syscall.Kill(-o.pid, sig)
		}
	}
}

// waitReady sends single Map-Registers (the table's first EID) until one
// is answered.
func waitReady(s *server) error {
	for range 60 {
		r, err := s.gen.Run(1, false, 500*time.Millisecond)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if r.Notifies == 1 {
			return nil
		}
		s.gen.Table-- // the same EID again
	}
	return fmt.Errorf("lispload: %s answers no Map-Register", s.name)
}

func startPsavd(s *server, o Options) error {
	dir := filepath.Join(o.WorkDir, "psavd")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`[lisp]
rlocs = [%q]
[lisp.map_server]
listen = "%s:4342"
[[lisp.site]]
name = "bench"
key = %q
key_id = 1
eid_prefixes = ["10.0.0.0/8"]
accept_more_specifics = true
`, serverAddr, serverAddr, siteKey)
	path := filepath.Join(dir, "psavd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", s.ns, o.Psavd, "-config", path)
	logf, err := os.Create(filepath.Join(dir, "psavd.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	s.pid = cmd.Process.Pid
	s.stop = func() {
		_ = syscall.Kill(-s.pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-s.pid, syscall.SIGKILL)
			<-done
		}
	}
	return nil
}

func startOOR(s *server, o Options) error {
	dir := filepath.Join(o.WorkDir, "oor")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := fmt.Sprintf(`debug = 0
operating-mode = MS
control-iface = rloc
lisp-site {
 eid-prefix = 10.0.0.0/8
 key-type = 1
 key = %s
 iid = 0
 accept-more-specifics = true
 proxy-reply = false
}
`, siteKey)
	p, err := oorpeer.Start(o.OORBin, o.OORDir, s.ns, dir, conf)
	if err != nil {
		return err
	}
	s.pid = p.Pid()
	s.stop = func() {
		p.Stop()
		_ = os.WriteFile(filepath.Join(dir, "oor.log"), []byte(p.Log()), 0o644)
	}
	return nil
}

// cpuTime is the user+system CPU time of process pid (/proc/pid/stat).
func cpuTime(pid int) (time.Duration, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && line == "" {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := strings.LastIndexByte(line, ')')
	if i < 0 {
		return 0, fmt.Errorf("lispload: /proc/%d/stat: %q", pid, line)
	}
	f2 := strings.Fields(line[i+1:]) // field 3 onwards
	if len(f2) < 13 {
		return 0, fmt.Errorf("lispload: /proc/%d/stat: short", pid)
	}
	var ticks int64
	for _, s := range f2[11:13] { // utime, stime (fields 14, 15)
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clkTck, nil
}

// clkTck is USER_HZ, 100 on every Linux this runs on.
const clkTck = 100
