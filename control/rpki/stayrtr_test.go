package rpki

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/testtool"
)

// Interop with a real RTR cache: StayRTR (github.com/bgp/stayrtr) serving a
// JSON VRP file the test writes. The binary is $STAYRTR, else the Debian
// package's (tools/debian-packages.txt); without it the test is skipped and
// says why (failed under make test).
func findStayRTR(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("STAYRTR"); p != "" {
		return p
	}
	return testtool.Path(t, "stayrtr", "stayrtr")
}

type jsonROA struct {
	Prefix    string `json:"prefix"`
	MaxLength int    `json:"maxLength"`
	ASN       string `json:"asn"`
	TA        string `json:"ta"`
}

// writeVRPs writes the rpki-client JSON format StayRTR reads with -cache,
// atomically (StayRTR must never see a half-written file).
func writeVRPs(t *testing.T, path string, vrps []VRP) {
	t.Helper()
	doc := struct {
		Metadata map[string]any `json:"metadata"`
		ROAs     []jsonROA      `json:"roas"`
	}{Metadata: map[string]any{"buildtime": time.Now().UTC().Format(time.RFC3339)}}
	for _, v := range vrps {
		doc.ROAs = append(doc.ROAs, jsonROA{v.Prefix.String(), int(v.MaxLen), fmt.Sprintf("AS%d", v.ASN), "psavd-test"})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer collects the server's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startStayRTR runs StayRTR on a free loopback port serving file and
// returns its address. It is killed on cleanup, also when the test fails.
func startStayRTR(t *testing.T, bin, file string, extra ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := append([]string{
		"-bind", addr,
		"-metrics.addr", "127.0.0.1:0",
		"-cache", file,
		"-checktime=false",
		"-refresh", "1", // re-read the file every second
		"-rtr.refresh", "3600", // so a quick update can only come from Serial Notify
		"-rtr.retry", "1",
		"-rtr.expire", "600",
	}, extra...)
	cmd := exec.Command(bin, args...)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stayrtr: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("stayrtr output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("stayrtr exited before listening on %s:\n%s", addr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("stayrtr not listening on %s after 15 s:\n%s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStayRTRInterop(t *testing.T) {
	bin := findStayRTR(t)
	mp := netip.MustParsePrefix
	file := filepath.Join(t.TempDir(), "vrps.json")
	writeVRPs(t, file, []VRP{
		{mp("192.0.2.0/24"), 24, 64500},
		{mp("2001:db8::/32"), 48, 64500},
		{mp("198.51.100.0/24"), 24, 64501},
	})
	addr := startStayRTR(t, bin, file)

	updates := make(chan *Validator, 64)
	c, err := NewClient(Config{Addr: addr, Retry: 200 * time.Millisecond,
		OnUpdate: func(v *Validator) { updates <- v }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	v := waitFor(t, updates, func(v *Validator) bool { return v.Len() == 3 })
	if c.Validator() == nil || v.Version() != 1 {
		t.Fatalf("snapshot version %d, Validator %v", v.Version(), c.Validator())
	}
	check := func(v *Validator, asn uint32, prefixes []netip.Prefix, wantOK bool, wantUnc []netip.Prefix) {
		t.Helper()
		ok, unc := v.Covered(asn, prefixes)
		if ok != wantOK || !slices.Equal(unc, wantUnc) {
			t.Errorf("Covered(AS%d, %v) = %v %v, want %v %v", asn, prefixes, ok, unc, wantOK, wantUnc)
		}
	}
	check(v, 64500, []netip.Prefix{mp("192.0.2.0/24"), mp("2001:db8::/32"), mp("2001:db8:ff::/48")}, true, nil)
	check(v, 64500, []netip.Prefix{mp("192.0.2.0/24"), mp("203.0.113.0/24")}, false, []netip.Prefix{mp("203.0.113.0/24")})                       // uncovered
	check(v, 64500, []netip.Prefix{mp("192.0.2.128/25"), mp("2001:db8::/49")}, false, []netip.Prefix{mp("192.0.2.128/25"), mp("2001:db8::/49")}) // past maxLength
	check(v, 64501, []netip.Prefix{mp("192.0.2.0/24"), mp("198.51.100.0/24")}, false, []netip.Prefix{mp("192.0.2.0/24")})                        // wrong ASN
	serial := v.Serial()

	// Change the file: StayRTR re-reads it within a second, bumps its serial
	// and sends Serial Notify; the client answers with Serial Query and gets
	// the delta (a withdrawal and an announcement).
	writeVRPs(t, file, []VRP{
		{mp("2001:db8::/32"), 48, 64500},
		{mp("198.51.100.0/24"), 24, 64501},
		{mp("203.0.113.0/24"), 24, 64500},
	})
	v2 := waitFor(t, updates, func(v *Validator) bool { return v.Serial() != serial })
	check(v2, 64500, []netip.Prefix{mp("203.0.113.0/24"), mp("2001:db8::/32")}, true, nil)
	check(v2, 64500, []netip.Prefix{mp("192.0.2.0/24")}, false, []netip.Prefix{mp("192.0.2.0/24")})
	if v2.Len() != 3 || v2.SessionID() != v.SessionID() {
		t.Errorf("after update: %d VRPs, session %d→%d", v2.Len(), v.SessionID(), v2.SessionID())
	}
	st := c.Status()
	if st.Notifies == 0 || st.SerialQueries == 0 || st.Resets != 1 || st.ErrorsSent != 0 || st.ErrorsReceived != 0 {
		t.Errorf("update did not come through Serial Notify/Serial Query: %+v", st)
	}
	check(v, 64500, []netip.Prefix{mp("192.0.2.0/24")}, true, nil) // old snapshot unchanged
}

// TestStayRTRVersion0 checks the version fallback against StayRTR limited
// to protocol version 0 (RFC 6810).
func TestStayRTRVersion0(t *testing.T) {
	bin := findStayRTR(t)
	file := filepath.Join(t.TempDir(), "vrps.json")
	writeVRPs(t, file, []VRP{{netip.MustParsePrefix("192.0.2.0/24"), 24, 64500}})
	addr := startStayRTR(t, bin, file, "-protocol", "0")
	updates := make(chan *Validator, 16)
	c, err := NewClient(Config{Addr: addr, Retry: 200 * time.Millisecond,
		OnUpdate: func(v *Validator) { updates <- v }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	v := waitFor(t, updates, func(v *Validator) bool { return v.Len() == 1 })
	if v.Version() != 0 {
		t.Fatalf("version %d, want 0", v.Version())
	}
	if ok, _ := v.Covered(64500, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}); !ok {
		t.Fatal("not covered")
	}
}

func waitFor(t *testing.T, ch chan *Validator, cond func(*Validator) bool) *Validator {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case v := <-ch:
			if cond(v) {
				return v
			}
		case <-timeout:
			t.Fatal("no matching snapshot within 20 s")
		}
	}
}
