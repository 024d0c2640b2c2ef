package adot

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// stallRow measures, over `conns` fresh connections, the first query on
// each connection and the later ones, for one client variant.
func stallRow(t *testing.T, variant, addr string, pool *x509.CertPool, conns, perConn int) (first, later time.Duration) {
	t.Helper()
	cache := tls.NewLRUClientSessionCache(8)
	var fs, ls []time.Duration
	for i := 0; i < conns; i++ {
		switch variant {
		case "miekg/dns ExchangeWithConn":
			cl := &dns.Client{Net: "tcp-tls", TLSConfig: &tls.Config{ServerName: testServerName, RootCAs: pool,
				MinVersion: tls.VersionTLS13, ClientSessionCache: cache}}
			co, err := cl.Dial(addr)
			if err != nil {
				t.Fatal(err)
			}
			for j := 0; j < perConn; j++ {
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("%d.%s", j%4, testZone), dns.TypeA)
				s := time.Now()
				if _, _, err := cl.ExchangeWithConn(m, co); err != nil {
					t.Fatal(err)
				}
				if d := time.Since(s); j == 0 {
					fs = append(fs, d)
				} else {
					ls = append(ls, d)
				}
			}
			co.Close()
		default:
			c, err := NewClient(Config{Servers: []string{addr}, ServerName: testServerName, RootCAs: pool,
				SessionCache: cache, MaxCacheEntries: -1})
			if err != nil {
				t.Fatal(err)
			}
			c.noQuickAck = variant != "adot (one record + TCP_QUICKACK)"
			c.splitWrites = variant == "adot split length/message, Nagle on, no quickack"
			for j := 0; j < perConn; j++ {
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("%d.%s", j%4, testZone), dns.TypeA)
				_, info, err := c.Exchange(context.Background(), m)
				if err != nil {
					t.Fatal(err)
				}
				if j == 0 {
					fs = append(fs, info.RTT)
				} else {
					ls = append(ls, info.RTT)
				}
			}
			c.Close()
		}
	}
	return median(fs), median(ls)
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

var stallVariants = []string{
	"miekg/dns ExchangeWithConn",
	"adot one record, no quickack",
	"adot (one record + TCP_QUICKACK)",
	"adot split length/message, Nagle on, no quickack",
}

func logStallTable(t *testing.T, title, addr string, pool *x509.CertPool) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: median RTT of the first query on a new TLS connection vs later queries (10 conns x 5 queries)\n", title)
	for _, v := range stallVariants {
		f, l := stallRow(t, v, addr, pool, 10, 5)
		fmt.Fprintf(&b, "  %-50s first %10v   later %10v\n", v, f.Round(time.Microsecond), l.Round(time.Microsecond))
	}
	t.Log(b.String())
}

// TestFirstQueryStallBIND reports (no timing assertion) the first-query
// stall against BIND 9.18 and how the client variants fare. Run with -v.
func TestFirstQueryStallBIND(t *testing.T) {
	b := startBIND(t)
	logStallTable(t, "BIND 9.18", b.TLSAddr, b.PKI.CAPool)
}
