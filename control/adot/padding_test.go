package adot

import (
	"context"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/psavd/psavd/internal/testtool"
)

// TestPackPadded: block-length padding (RFC 8467 §4.1) for messages of
// every size up to beyond a block, queries and responses.
func TestPackPadded(t *testing.T) {
	for _, block := range []int{QueryPadBlock, ResponsePadBlock} {
		for n := 1; n < 60; n += 7 {
			m := new(dns.Msg)
			m.SetQuestion(strings.Repeat("a", n)+"."+testZone, dns.TypeA)
			m.SetEdns0(ednsUDPSize, false)
			for range n / 10 {
				rr, _ := dns.NewRR(m.Question[0].Name + " 30 IN TXT \"" + strings.Repeat("x", n) + "\"")
				m.Answer = append(m.Answer, rr)
			}
			wire, err := packPadded(m, block)
			if err != nil {
				t.Fatal(err)
			}
			if len(wire)%block != 0 {
				t.Fatalf("block %d, name %d: %d octets", block, n, len(wire))
			}
			back := new(dns.Msg)
			if err := back.Unpack(wire); err != nil || !hasPadding(back) {
				t.Fatalf("padded message does not unpack with padding: %v", err)
			}
			again, _ := packPadded(back, block) // an existing option is replaced, not added to
			if len(again) != len(wire) {
				t.Fatalf("re-padding changed the size %d → %d", len(wire), len(again))
			}
		}
	}
	m := new(dns.Msg)
	m.SetQuestion(testZone, dns.TypeA)
	if wire, _ := packPadded(m, QueryPadBlock); len(wire)%QueryPadBlock == 0 {
		t.Fatal("padded without an OPT record")
	}
}

// TestOwnServerPadding: our client pads its queries to 128; our server
// pads the answers to padded queries to 468 and leaves unpadded queries'
// answers alone.
func TestOwnServerPadding(t *testing.T) {
	s, b := startOwn(t, nil)
	c := b.client(t, func(c *Config) { c.MaxCacheEntries = -1 })
	if _, err := c.Lookup(ctx10(t), "1."+testZone, dns.TypeAAAA); err != nil {
		t.Fatal(err)
	}
	if c.Metrics().Padded.Load() != 1 || s.Metrics().Padded.Load() != 1 {
		t.Fatalf("padded answers: client got %d, server sent %d; want 1, 1", c.Metrics().Padded.Load(), s.Metrics().Padded.Load())
	}
	for _, padded := range []bool{true, false} {
		q := new(dns.Msg)
		q.SetQuestion("1."+testZone, dns.TypeAAAA)
		q.SetEdns0(ednsUDPSize, false)
		var wire []byte
		if padded {
			wire, _ = packPadded(q, QueryPadBlock)
			if len(wire)%QueryPadBlock != 0 {
				t.Fatalf("query of %d octets", len(wire))
			}
		} else {
			wire, _ = q.Pack()
		}
		out := s.respondOne(wire)
		r := new(dns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatal(err)
		}
		if padded != hasPadding(r) || padded != (len(out)%ResponsePadBlock == 0) {
			t.Fatalf("query padded %v: answer of %d octets, padding option %v", padded, len(out), hasPadding(r))
		}
	}
}

// TestOwnServerKdigPadding (issue 17, must-show 3): kdig +tls +padding
// gets an answer padded to a multiple of 468 octets.
func TestOwnServerKdigPadding(t *testing.T) {
	kdig := testtool.Path(t, "kdig", "knot-dnsutils")
	_, b := startOwn(t, nil)
	host, port, _ := net.SplitHostPort(b.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := []string{"@" + host, "-p", port, "+tls", "+tls-ca=" + b.pki.CAFile, "+tls-hostname=" + testServerName,
		"+padding", "1." + testZone, "AAAA"}
	out, err := exec.CommandContext(ctx, kdig, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kdig %v: %v\n%s", args, err, out)
	}
	m := regexp.MustCompile(`;; Received (\d+) B`).FindSubmatch(out)
	if m == nil || !strings.Contains(string(out), "PADDING") || !strings.Contains(string(out), "2001:db8::11") {
		t.Fatalf("kdig: no padded answer:\n%s", out)
	}
	if n, _ := strconv.Atoi(string(m[1])); n%ResponsePadBlock != 0 {
		t.Fatalf("kdig received %d octets, not a multiple of %d:\n%s", n, ResponsePadBlock, out)
	}
	t.Logf("kdig +padding: %s", m[0])
}

// TestBINDPadding (issue 17, must-show 3): our client's padded queries get
// padded answers from BIND 9.18 configured with response-padding block-size
// 468 (9.18 pads nothing by default, padded query or not).
func TestBINDPadding(t *testing.T) {
	b := startBIND(t)
	be := backend{addr: b.TLSAddr, pki: b.PKI}
	c := be.client(t, func(c *Config) { c.MaxCacheEntries = -1 })
	q := new(dns.Msg)
	q.SetQuestion("2."+testZone, dns.TypeA)
	resp, _, err := c.Exchange(ctx10(t), q)
	if err != nil {
		t.Fatal(err)
	}
	resp.Compress = true // as BIND sent it
	wire, _ := resp.Pack()
	if !hasPadding(resp) || len(wire)%ResponsePadBlock != 0 || c.Metrics().Padded.Load() != 1 {
		t.Fatalf("BIND's answer (%d octets) is not padded:\n%v", len(wire), resp)
	}
	t.Logf("BIND's answer: %d octets, padded", len(wire))
}
