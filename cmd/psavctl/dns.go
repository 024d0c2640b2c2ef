package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/psavd/psavd/control/adot"
)

// dnsLookup is `psavctl dns` (docs/wire.md §4.2): a look-up through the ADoT
// client, N times over one persistent connection (or, with -new-conn, over a
// new connection each time, to show TLS session resumption), printing the
// answers and, per query, whether the TLS session was new or resumed, the
// connection new or reused, and the round-trip time.
func dnsLookup(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "DNS-over-TLS server, host:port (port 853 if omitted)")
	tlsName := fs.String("tls-name", "", "name the server's certificate must carry")
	caFile := fs.String("ca", "", "CA bundle (PEM) the certificate must chain to (default: the system's)")
	count := fs.Int("count", 1, "queries to send")
	newConn := fs.Bool("new-conn", false, "a new TLS connection per query (resumed after the first)")
	tls12 := fs.Bool("tls12", false, "allow TLS 1.2 (default: TLS 1.3 only)")
	timeout := fs.Duration("timeout", 5*time.Second, "per query")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *server == "" || *tlsName == "" || fs.NArg() < 1 || fs.NArg() > 2 || *count < 1 {
		fmt.Fprintln(stderr, "psavctl dns: need -server, -tls-name and QNAME [A|AAAA]")
		return 2
	}
	qtype := dns.TypeA
	if fs.NArg() == 2 {
		switch strings.ToUpper(fs.Arg(1)) {
		case "A":
		case "AAAA":
			qtype = dns.TypeAAAA
		default:
			fmt.Fprintf(stderr, "psavctl dns: query type %q is not A or AAAA\n", fs.Arg(1))
			return 2
		}
	}
	addr := *server
	if !strings.Contains(addr, ":") || strings.HasSuffix(addr, "]") {
		addr += ":853"
	}
	var roots *x509.CertPool
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintf(stderr, "psavctl dns: %v\n", err)
			return 1
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "psavctl dns: %s holds no PEM certificate\n", *caFile)
			return 1
		}
	}
	sessions := tls.NewLRUClientSessionCache(8) // shared, so new connections resume
	newClient := func() (*adot.Client, error) {
		return adot.NewClient(adot.Config{Servers: []string{addr}, ServerName: *tlsName, RootCAs: roots,
			AllowTLS12: *tls12, MaxCacheEntries: -1, SessionCache: sessions, QueryTimeout: *timeout, Attempts: 1})
	}
	c, err := newClient()
	if err != nil {
		fmt.Fprintf(stderr, "psavctl dns: %v\n", err)
		return 1
	}
	defer func() { c.Close() }()
	name := dns.Fqdn(fs.Arg(0))
	failed := false
	for i := 1; i <= *count; i++ {
		if *newConn && i > 1 {
			c.Close()
			if c, err = newClient(); err != nil {
				fmt.Fprintf(stderr, "psavctl dns: %v\n", err)
				return 1
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		addrs, info, err := c.LookupInfo(ctx, name, qtype)
		cancel()
		if err != nil {
			fmt.Fprintf(stdout, "query %d/%d: failed (%s): %v\n", i, *count, adot.CauseOf(err), err)
			failed = true
			continue
		}
		if i == 1 {
			for _, a := range addrs {
				fmt.Fprintf(stdout, "%s\t%s\t%s\n", name, dns.TypeToString[qtype], a)
			}
		}
		conn := "reused"
		if info.NewConn {
			conn = "new"
		}
		fmt.Fprintf(stdout, "query %d/%d: session %s, connection %s, %s, rtt %s, server %s\n",
			i, *count, info.Session(), conn, tls.VersionName(info.TLSVersion), info.RTT.Round(time.Microsecond), info.Server)
	}
	if failed {
		return 1
	}
	return 0
}
