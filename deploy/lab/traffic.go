package lab

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/netlab"
	"github.com/psavd/psavd/internal/psavref"
)

// How long the lab waits for traffic. These bound a wait; nothing is
// judged by how fast it goes.
const (
	deliverTimeout = 15 * time.Second       // until every packet of a flow arrived
	dropTimeout    = 10 * time.Second       // until the expected drop counter reached the count
	settleTime     = 500 * time.Millisecond // for a late delivery after the drops were counted
)

// FlowResult is the outcome of one flow.
type FlowResult struct {
	Index     int
	Flow      Flow
	Sent      int
	Delivered int // distinct packets that reached the destination namespace
	// Frames is the number of frames with the flow's markers that arrived
	// at the destination: each crossed the ABRs, so their counters must
	// show at least as many. It equals Sent except for TCP, which may pack
	// several records into one segment (or resend one).
	Frames  int
	Replies int // ICMP echo replies back at the sender (ICMP flows)
	// Delta holds, per ABR node, the counters that changed during the flow.
	Delta   map[string]Counters
	OK      bool
	Problem string // why the flow failed
}

// markSet is a concurrency-safe set of markers.
type markSet struct {
	mu sync.Mutex
	m  map[Marker]bool
}

func (s *markSet) add(ms ...Marker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[Marker]bool{}
	}
	for _, m := range ms {
		s.m[m] = true
	}
}

func (s *markSet) count(flow int, other *markSet) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for m := range s.m {
		if m.Flow == flow {
			n++
		}
	}
	if other != nil {
		other.mu.Lock()
		defer other.mu.Unlock()
		for m := range other.m {
			if m.Flow == flow && !s.m[m] {
				n++
			}
		}
	}
	return n
}

// Watch is a sniffer at one interface that keeps the markers of the run it
// saw arriving (incoming frames only).
type Watch struct {
	S       *Sniffer
	run     string
	mu      sync.Mutex
	scanned int
	seen    markSet
	frames  map[int]int // flow → frames carrying its markers
}

// Watch starts a marker watch on interface iface of node.
func (e *Env) Watch(node, iface string) (*Watch, error) {
	s, err := Sniff(e.NS(node), iface)
	if err != nil {
		return nil, err
	}
	return &Watch{S: s, run: e.Run}, nil
}

// update scans the frames captured since the last call.
func (w *Watch) update(frames []Captured) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.frames == nil {
		w.frames = map[int]int{}
	}
	for _, c := range frames[w.scanned:] {
		if c.Outgoing {
			continue
		}
		ms := Markers(c.Frame, w.run)
		w.seen.add(ms...)
		for i, m := range ms {
			if i == 0 || ms[i-1].Flow != m.Flow {
				w.frames[m.Flow]++
			}
		}
	}
	w.scanned = len(frames)
}

// Count returns how many distinct packets of flow arrived (plus those in
// also, which the application received).
func (w *Watch) Count(flow int, also *markSet) int {
	w.update(w.S.Frames())
	return w.seen.count(flow, also)
}

// FrameCount returns how many arrived frames carried markers of flow.
func (w *Watch) FrameCount(flow int) int {
	w.update(w.S.Frames())
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.frames[flow]
}

// Close stops the watch.
func (w *Watch) Close() { w.S.Close() }

// payload returns the payload of packet seq of flow idx: the marker,
// padded so that packets are not trivially small.
func (e *Env) payload(idx, seq int) []byte {
	m := MarkerText(e.Run, Marker{idx, seq})
	return []byte(m + " " + strings.Repeat("psav", 10))
}

// RunFlow sends flow f (index idx) with n packets and judges the outcome.
// w watches the destination's interface.
func (e *Env) RunFlow(ctx context.Context, idx int, f *Flow, n int, w *Watch) (FlowResult, error) {
	r := FlowResult{Index: idx, Flow: *f, Delta: map[string]Counters{}}
	before, err := e.allCounters(ctx)
	if err != nil {
		return r, err
	}
	app := &markSet{}
	var replies func() int
	var finish func()
	switch {
	case f.Spoofed():
		r.Sent, err = e.sendForged(idx, f, n)
	case f.Proto == "udp":
		r.Sent, finish, err = e.sendUDP(idx, f, n, app)
	case f.Proto == "tcp":
		r.Sent, finish, err = e.sendTCP(ctx, idx, f, n, app)
	case f.Proto == "icmp":
		r.Sent, replies, finish, err = e.sendICMP(idx, f, n)
	}
	if finish != nil {
		defer finish()
	}
	if err != nil {
		return r, fmt.Errorf("flow %d (%s): %w", idx, f.Label(), err)
	}

	// Wait for the outcome: all packets delivered (and counted), or the
	// expected drops counted.
	deadline := time.Now().Add(deliverTimeout)
	if f.Expect == "deliver" {
		w.S.Wait(ctx, deliverTimeout, func(frames []Captured) bool {
			w.update(frames)
			return w.seen.count(idx, app) >= r.Sent
		})
		r.Frames = w.FrameCount(idx)
		if replies != nil {
			for replies() < r.Sent && time.Now().Before(deadline) && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	// Counters may trail the packets by a poll loop's batch: poll them until
	// they say what is expected, or give up and report what they say.
	deadline = time.Now().Add(dropTimeout)
	for ctx.Err() == nil {
		after, err := e.allCounters(ctx)
		if err != nil {
			return r, err
		}
		for name, c := range after {
			r.Delta[name] = c.Sub(before[name])
		}
		if countersDone(&r, f) || time.Now().After(deadline) || e.standIns() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if f.Expect == "drop" {
		// Counted does not prove that nothing slipped through elsewhere.
		select {
		case <-time.After(settleTime):
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		return r, err
	}
	r.Delivered = w.Count(idx, app)
	r.Frames = w.FrameCount(idx)
	if replies != nil {
		r.Replies = replies()
	}
	r.OK, r.Problem = judge(&r)
	return r, nil
}

// countersDone reports whether the counters show what f expects.
func countersDone(r *FlowResult, f *Flow) bool {
	if f.Expect == "drop" {
		return r.Delta[f.At].Total("drops", f.Reason) >= float64(r.Sent)
	}
	for _, c := range f.Counted {
		node, action, _ := strings.Cut(c, ":")
		if r.Delta[node].Total("packets", action) < float64(r.Frames) {
			return false
		}
	}
	return true
}

// judge compares a flow's outcome with its expectation.
func judge(r *FlowResult) (bool, string) {
	f := &r.Flow
	var problems []string
	if f.Expect == "deliver" {
		if r.Delivered < r.Sent {
			problems = append(problems, fmt.Sprintf("%d of %d packets lost", r.Sent-r.Delivered, r.Sent))
		}
		for _, c := range f.Counted {
			node, action, _ := strings.Cut(c, ":")
			if got := r.Delta[node].Total("packets", action); got < float64(r.Frames) {
				problems = append(problems, fmt.Sprintf("%s counted %s %v times for %d packets that arrived", node, action, got, r.Frames))
			}
		}
		// Nothing of a legitimate exchange (its replies and ACKs included)
		// may be dropped.
		if d := dropText(r); d != "-" {
			problems = append(problems, "drops during the flow: "+d)
		}
	} else {
		if r.Delivered > 0 {
			problems = append(problems, fmt.Sprintf("%d of %d forged packets delivered", r.Delivered, r.Sent))
		}
		if got := r.Delta[f.At].Total("drops", f.Reason); got < float64(r.Sent) {
			problems = append(problems, fmt.Sprintf("%s dropped %v as %s, not %d", f.At, got, f.Reason, r.Sent))
		}
	}
	return len(problems) == 0, strings.Join(problems, "; ")
}

// dropText lists the drops of a flow: "20 no-tag@abr2, ...", or "-".
func dropText(r *FlowResult) string {
	var parts []string
	for _, node := range sortedKeys(r.Delta) {
		byReason := map[string]float64{}
		for k, v := range r.Delta[node] {
			if k.Metric == "drops" {
				byReason[k.What] += v
			}
		}
		for _, reason := range sortedKeys(byReason) {
			parts = append(parts, fmt.Sprintf("%v %s@%s", byReason[reason], reason, node))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// countedText shows the counters a delivered flow expects: "tagged 20@abr1".
func countedText(r *FlowResult) string {
	var parts []string
	for _, c := range r.Flow.Counted {
		node, action, _ := strings.Cut(c, ":")
		parts = append(parts, fmt.Sprintf("%s %v@%s", action, r.Delta[node].Total("packets", action), node))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// allCounters scrapes every ABR; it fails when one of them has died.
func (e *Env) allCounters(ctx context.Context) (map[string]Counters, error) {
	m := map[string]Counters{}
	for _, n := range e.Topo.ABRs() {
		if err := e.alive(n.Name); err != nil {
			return nil, err
		}
		e.mu.Lock()
		standIn := e.abrs[n.Name] != nil && e.abrs[n.Name].stop != nil
		e.mu.Unlock()
		if standIn {
			m[n.Name] = Counters{} // a stand-in has no counters
			continue
		}
		c, err := e.Counters(ctx, n.Name)
		if err != nil {
			return nil, err
		}
		m[n.Name] = c
	}
	return m, nil
}

// standIns reports whether the ABRs are test stand-ins without counters.
func (e *Env) standIns() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.abrs {
		if n.stop != nil {
			return true
		}
	}
	return false
}

// alive returns an error when the psavd of node name has exited.
func (e *Env) alive(name string) error {
	e.mu.Lock()
	n := e.abrs[name]
	e.mu.Unlock()
	if n == nil {
		return fmt.Errorf("%s: not started", name)
	}
	if n.cmd == nil {
		return nil
	}
	select {
	case <-n.done:
		return fmt.Errorf("%s: psavd exited during the run (%v); its last output:\n%s", name, n.err, indent(n.out.String()))
	default:
		return nil
	}
}

// pace spaces the packets of a flow a little, so that a flow is a stream
// rather than one burst that only tests queue sizes.
func pace() { time.Sleep(time.Millisecond) }

// sendForged crafts n UDP packets with the forged source f.src and puts them
// on the sender's wire as raw frames addressed to its next hop.
func (e *Env) sendForged(idx int, f *Flow, n int) (int, error) {
	iface, hop, err := e.NextHop(f.From, f.dst)
	if err != nil {
		return 0, err
	}
	raw, err := OpenRaw(e.NS(f.From), iface)
	if err != nil {
		return 0, err
	}
	defer raw.Close()
	_, pfx := e.Topo.MemberOf(f.src)
	if pfx < 0 {
		pfx = 0
	}
	sent := 0
	for i := 0; i < n; i++ {
		udp := header.AppendUDP(nil, f.src, f.dst, uint16(30000+idx), uint16(40000+idx), e.payload(idx, i))
		var ip []byte
		var tag [8]byte
		epoch := uint8(e.Topo.Epoch(time.Now()))
		if f.Tag != "" {
			_, _ = crand.Read(tag[:])
			if f.Tag == "stale" {
				// Far outside the window of e−1, e, e+1 a validator accepts.
				epoch += 100
			}
		}
		if f.Family == 4 {
			var opts []byte
			if f.Tag != "" {
				opts = psavref.IPv4Option(tag, epoch, uint8(pfx))
			}
			ip = header.AppendIPv4(nil, header.IPv4Fields{ID: uint16(idx<<8 | i), Flags: header.IPv4FlagDontFragment, TTL: 64, Protocol: header.ProtoUDP, Src: f.src, Dst: f.dst, Options: opts}, udp)
		} else {
			var ext []header.IPv6ExtHeader
			if f.Tag != "" {
				ext = []header.IPv6ExtHeader{psavref.IPv6DestOpts(tag, epoch, uint8(pfx))}
			}
			ip = header.AppendIPv6(nil, header.IPv6Fields{HopLimit: 64, NextHeader: header.ProtoUDP, Src: f.src, Dst: f.dst, Ext: ext}, udp)
		}
		if err := raw.Send(header.AppendEthernet(nil, hop, raw.MAC, ip)); err != nil {
			return sent, err
		}
		sent++
		pace()
	}
	return sent, nil
}

// inNS runs fn inside node's namespace (sockets it opens stay there).
func (e *Env) inNS(node string, fn func() error) error { return netlab.Do(e.NS(node), fn) }

// sendUDP sends n datagrams from a UDP socket in f.From to one in f.To,
// which records the markers it receives in app.
func (e *Env) sendUDP(idx int, f *Flow, n int, app *markSet) (int, func(), error) {
	addr := net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.dst, uint16(40000+idx)))
	var rc *net.UDPConn
	if err := e.inNS(f.To, func() (err error) {
		rc, err = net.ListenUDP("udp", addr)
		return err
	}); err != nil {
		return 0, nil, err
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			k, err := rc.Read(buf)
			if err != nil {
				return
			}
			app.add(Markers(buf[:k], e.Run)...)
		}
	}()
	finish := func() { rc.Close() }
	var sc net.Conn
	if err := e.inNS(f.From, func() (err error) {
		sc, err = net.Dial("udp", addr.String())
		return err
	}); err != nil {
		return 0, finish, err
	}
	defer sc.Close()
	sent := 0
	for i := 0; i < n; i++ {
		if _, err := sc.Write(e.payload(idx, i)); err != nil {
			return sent, finish, err
		}
		sent++
		pace()
	}
	return sent, finish, nil
}

// sendTCP opens one TCP connection from f.From to f.To and sends n
// newline-terminated records over it; the server records their markers.
func (e *Env) sendTCP(ctx context.Context, idx int, f *Flow, n int, app *markSet) (int, func(), error) {
	addr := netip.AddrPortFrom(f.dst, uint16(40000+idx)).String()
	var ln net.Listener
	if err := e.inNS(f.To, func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return 0, nil, err
	}
	served := make(chan struct{})
	var connMu sync.Mutex
	var conns []net.Conn
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		connMu.Lock()
		conns = append(conns, c)
		connMu.Unlock()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			app.add(Markers(sc.Bytes(), e.Run)...)
		}
	}()
	finish := func() {
		ln.Close()
		connMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connMu.Unlock()
		<-served
	}
	var c net.Conn
	if err := e.inNS(f.From, func() (err error) {
		d := net.Dialer{Timeout: deliverTimeout}
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	}); err != nil {
		return 0, finish, err
	}
	connMu.Lock()
	conns = append(conns, c)
	connMu.Unlock()
	// One segment per record, so that a flow of n records is n packets.
	_ = c.(*net.TCPConn).SetNoDelay(true)
	sent := 0
	for i := 0; i < n; i++ {
		if _, err := c.Write(append(e.payload(idx, i), '\n')); err != nil {
			return sent, finish, err
		}
		sent++
		pace()
	}
	// Closing our side ends the server's read loop once all data arrived.
	_ = c.(*net.TCPConn).CloseWrite()
	select {
	case <-served:
	case <-time.After(deliverTimeout):
	case <-ctx.Done():
	}
	return sent, finish, nil
}

// sendICMP sends n echo requests from a raw ICMP socket in f.From; the
// kernel of f.To answers them. It returns a function counting the replies.
func (e *Env) sendICMP(idx int, f *Flow, n int) (int, func() int, func(), error) {
	network, laddr := "ip4:icmp", "0.0.0.0"
	if f.Family == 6 {
		network, laddr = "ip6:ipv6-icmp", "::"
	}
	var c net.PacketConn
	if err := e.inNS(f.From, func() (err error) {
		c, err = net.ListenPacket(network, laddr)
		return err
	}); err != nil {
		return 0, nil, nil, err
	}
	var idb [2]byte
	_, _ = crand.Read(idb[:])
	id := binary.BigEndian.Uint16(idb[:])
	got := &markSet{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			// Go strips the IPv4 header of ip4 raw sockets: buf is the ICMP
			// message. Echo reply: type 0 (ICMP) or 129 (ICMPv6).
			if k >= 8 && (buf[0] == 0 || buf[0] == 129) && binary.BigEndian.Uint16(buf[4:]) == id {
				got.add(Markers(buf[8:k], e.Run)...)
			}
		}
	}()
	finish := func() { c.Close(); <-done }
	replies := func() int { return got.count(idx, nil) }
	sent := 0
	for i := 0; i < n; i++ {
		// The kernel computes the ICMPv6 checksum of raw sockets itself, over
		// the source it chooses; for ICMPv4 the one computed here is final.
		msg := header.AppendICMPEcho(nil, f.src, f.dst, id, uint16(i), e.payload(idx, i))
		if _, err := c.WriteTo(msg, &net.IPAddr{IP: f.dst.AsSlice()}); err != nil {
			return sent, replies, finish, err
		}
		sent++
		pace()
	}
	return sent, replies, finish, nil
}
