package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/spf13/cobra"

	"github.com/psavd/psavd/control/adot"
)

// dnsLookup is `psavctl dns` (docs/wire.md §4.2): a look-up through the ADoT
// client, N times over one persistent connection (or, with -new-conn, over a
// new connection each time, to show TLS session resumption), printing the
// answers and, per query, whether the TLS session was new or resumed, the
// connection new or reused, and the round-trip time.
func (a *app) dnsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "dns -server HOST:PORT -tls-name NAME [-ca FILE] [-count N] [-new-conn] QNAME [A|AAAA]",
		Short: "look a name up through the ADoT (DNS over TLS) client",
		Long: `Looks QNAME up through psavd's DNS-over-TLS client, -count times over one
persistent connection (or, with -new-conn, a new connection each time, to
show TLS session resumption), and prints the answers and, per query,
whether the TLS session was new or resumed, the connection new or reused,
and the round-trip time.`,
	}
	var o dnsOptions
	fs := c.Flags()
	fs.StringVar(&o.server, "server", "", "DNS-over-TLS server, `HOST:PORT` (port 853 if omitted; required)")
	fs.StringVar(&o.tlsName, "tls-name", "", "the `NAME` the server's certificate must carry (required)")
	fs.StringVar(&o.caFile, "ca", "", "CA bundle `FILE` (PEM) the certificate must chain to (default: the system's)")
	fs.IntVar(&o.count, "count", 1, "`N` queries to send")
	fs.BoolVar(&o.newConn, "new-conn", false, "a new TLS connection per query (resumed after the first)")
	fs.BoolVar(&o.tls12, "tls12", false, "allow TLS 1.2 (default: TLS 1.3 only)")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "per query")
	return a.leaf(c, cobra.ArbitraryArgs, func(_ *cobra.Command, args []string) int {
		return dnsLookup(&o, args, a.stdout, a.stderr)
	})
}

// dnsOptions are psavctl dns's flags.
type dnsOptions struct {
	server, tlsName, caFile string
	count                   int
	newConn, tls12          bool
	timeout                 time.Duration
}

func dnsLookup(o *dnsOptions, args []string, stdout, stderr io.Writer) int {
	if o.server == "" || o.tlsName == "" || len(args) < 1 || len(args) > 2 || o.count < 1 {
		fmt.Fprintln(stderr, "psavctl dns: need -server, -tls-name and QNAME [A|AAAA]")
		return 2
	}
	qtype := dns.TypeA
	if len(args) == 2 {
		switch strings.ToUpper(args[1]) {
		case "A":
		case "AAAA":
			qtype = dns.TypeAAAA
		default:
			fmt.Fprintf(stderr, "psavctl dns: query type %q is not A or AAAA\n", args[1])
			return 2
		}
	}
	addr := o.server
	if !strings.Contains(addr, ":") || strings.HasSuffix(addr, "]") {
		addr += ":853"
	}
	var roots *x509.CertPool
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			fmt.Fprintf(stderr, "psavctl dns: %v\n", err)
			return 1
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "psavctl dns: %s holds no PEM certificate\n", o.caFile)
			return 1
		}
	}
	sessions := tls.NewLRUClientSessionCache(8) // shared, so new connections resume
	newClient := func() (*adot.Client, error) {
		return adot.NewClient(adot.Config{Servers: []string{addr}, ServerName: o.tlsName, RootCAs: roots,
			AllowTLS12: o.tls12, MaxCacheEntries: -1, SessionCache: sessions, QueryTimeout: o.timeout, Attempts: 1})
	}
	c, err := newClient()
	if err != nil {
		fmt.Fprintf(stderr, "psavctl dns: %v\n", err)
		return 1
	}
	defer func() { c.Close() }()
	name := dns.Fqdn(args[0])
	failed := false
	for i := 1; i <= o.count; i++ {
		if o.newConn && i > 1 {
			c.Close()
			if c, err = newClient(); err != nil {
				fmt.Fprintf(stderr, "psavctl dns: %v\n", err)
				return 1
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
		addrs, info, err := c.LookupInfo(ctx, name, qtype)
		cancel()
		if err != nil {
			fmt.Fprintf(stdout, "query %d/%d: failed (%s): %v\n", i, o.count, adot.CauseOf(err), err)
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
			i, o.count, info.Session(), conn, tls.VersionName(info.TLSVersion), info.RTT.Round(time.Microsecond), info.Server)
	}
	if failed {
		return 1
	}
	return 0
}
