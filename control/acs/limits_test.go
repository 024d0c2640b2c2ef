package acs

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/psavd/psavd/control/acspb"
)

// TestListenerUnderConnectionFlood is issue 14's listener check: from one
// other address (127.0.0.2), 2,000 idle TCP connections and 200 stalled
// TLS handshakes against an ACS while it peers and feeds an ABR. The pair
// stays up (no peer declared dead, no new machine), the ABR's feed keeps
// receiving heartbeats, a new operator call is answered, and the refusals
// are counted by reason.
func TestListenerUnderConnectionFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,200 connections")
	}
	probe, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 on this machine: %v", err)
	}
	probe.Close()
	l := newLab(t)
	l.mesh(65001, 65002)
	a, b := l.nodes[65001], l.nodes[65002]
	pairAgrees(t, a, b)
	deadA, deadB, estA := a.Counters().DeadDeclared, b.Counters().DeadDeclared, a.Counters().Established

	// The ABR of AS 65001, reading its feed throughout.
	fs, err := acspb.NewACSClient(abrConn(t, l, 65001, "edge-1")).Feed(context.Background(), &acspb.FeedRequest{Asn: 65001, Abr: "edge-1", FeedVersion: acspb.FeedVersion})
	if err != nil {
		t.Fatal(err)
	}
	feedMsgs := make(chan struct{}, 1<<16)
	go func() {
		for {
			if _, err := fs.Recv(); err != nil {
				close(feedMsgs)
				return
			}
			feedMsgs <- struct{}{}
		}
	}()

	// The attacker: one source address, 2,000 idle connections and 200
	// that start a TLS handshake (a record header, nothing after it).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	for i := range 2200 {
		c, err := d.Dial("tcp", l.addrs[65001])
		if err != nil {
			continue // the kernel's accept queue may be full for a moment
		}
		if i >= 2000 {
			c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00})
		}
		held = append(held, c)
	}
	refusedAtAccept := func() uint64 {
		r := a.Refusals()
		return r[[2]string{"listener", reasonSourceLimit}] + r[[2]string{"listener", reasonSourceRate}]
	}
	waitFor(t, "the flood refused at accept", func() bool { return refusedAtAccept() >= 1900 })
	// The few admitted ones are cut by the handshake timeout.
	waitFor(t, "stalled handshakes cut", func() bool { return a.Refusals()[[2]string{"listener", reasonHandshake}] >= 1 })

	// Meanwhile: the feed still heartbeats, and keeps doing so for a few
	// heartbeat intervals more while the attacker holds its connections.
	for range 5 {
		select {
		case _, ok := <-feedMsgs:
			if !ok {
				t.Fatal("the ABR's feed ended during the flood")
			}
		case <-time.After(waitLong):
			t.Fatal("the ABR's feed went silent during the flood")
		}
		time.Sleep(testHB)
	}
	// An operator call still gets through.
	opCert, err := l.ca.IssueOp(65001, "noc", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := statusCall(l.conn(t, 65001, opCert)); err != nil {
		t.Fatalf("Status during the flood: %v", err)
	}
	// The pair never dropped and its keys are current.
	if a.Counters().DeadDeclared != deadA || b.Counters().DeadDeclared != deadB || a.Counters().Established != estA {
		t.Fatalf("the pair was disturbed: dead %d→%d / %d→%d, established %d→%d", deadA, a.Counters().DeadDeclared,
			deadB, b.Counters().DeadDeclared, estA, a.Counters().Established)
	}
	if p := peerStatus(a, 65002); p == nil || p.State != StateUp {
		t.Fatalf("pair at 65001: %v", p)
	}
	if _, ok := a.Keys(time.Now().Unix())[65002]; !ok {
		t.Fatal("no current keys for AS65002")
	}
	t.Logf("refused at accept %d, handshakes cut %d", refusedAtAccept(), a.Refusals()[[2]string{"listener", reasonHandshake}])
}

func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:443":               "192.0.2.7/32",
		"[2001:db8:1:2:3::9]:443":     "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:7443": "2001:db8:1:2::/64",
		"[::ffff:192.0.2.7]:443":      "192.0.2.7/32",
	} {
		a, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := sourceKey(a).String(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestLimitListenerRate(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newLimitListener(nil, Limits{MaxConns: 100, MaxConnsPerSource: 100, NewConnsPerSecond: 2, NewConnsBurst: 3}.withDefaults(),
		func() time.Time { return now }, func(string, error) {})
	key := sourceKey(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)})
	var got []string
	for range 5 {
		got = append(got, l.admit(key))
	}
	if got[2] != "" || got[3] != reasonSourceRate {
		t.Fatalf("burst of 3: %q", got)
	}
	now = now.Add(time.Second) // two more tokens
	if r1, r2, r3 := l.admit(key), l.admit(key), l.admit(key); r1 != "" || r2 != "" || r3 != reasonSourceRate {
		t.Fatalf("after a second: %q %q %q", r1, r2, r3)
	}
	// The per-source and total limits.
	l = newLimitListener(nil, Limits{MaxConns: 3, MaxConnsPerSource: 2, NewConnsPerSecond: 100, NewConnsBurst: 100}.withDefaults(),
		func() time.Time { return now }, func(string, error) {})
	other := sourceKey(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 2)})
	if r := []string{l.admit(key), l.admit(key), l.admit(key)}; r[2] != reasonSourceLimit {
		t.Fatalf("per source: %q", r)
	}
	if r := []string{l.admit(other), l.admit(other)}; r[0] != "" || r[1] != reasonConnLimit {
		t.Fatalf("total: %q", r)
	}
	l.release(key)
	if r := l.admit(other); r != "" {
		t.Fatalf("after a release: %q", r)
	}
}
