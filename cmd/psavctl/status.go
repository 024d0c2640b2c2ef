package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/psavd/psavd/control/abr"
	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/pair"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"
)

// status asks an ACS for its Status over mutual TLS 1.3. The operator's
// certificate names an AS of the alliance; for the ACS of that same AS the
// ABR's check applies (same AS), for another AS's ACS the peer check.
func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("acs", "", "the ACS, host:port")
	asn := fs.Uint("asn", 0, "the AS the certificate names")
	target := fs.Uint("target-asn", 0, "the AS of the ACS asked (default: -asn)")
	cert := fs.String("cert", "", "certificate (PEM)")
	key := fs.String("key", "", "key (PEM)")
	ca := fs.String("ca", "", "alliance CA bundle (PEM)")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" || *asn == 0 || *cert == "" || *key == "" || *ca == "" {
		fmt.Fprintln(stderr, "psavctl status: need -acs, -asn, -cert, -key and -ca")
		return 2
	}
	id, err := pair.LoadIdentity(uint32(*asn), *cert, *key, *ca)
	if err != nil {
		fmt.Fprintf(stderr, "psavctl status: %v\n", err)
		return 1
	}
	t := uint32(*target)
	if t == 0 {
		t = id.ASN
	}
	tlsCfg, err := pair.ClientConfig(id, t)
	if t == id.ASN {
		tlsCfg, err = abr.TLSConfig(id, t)
	}
	if err != nil {
		fmt.Fprintf(stderr, "psavctl status: %v\n", err)
		return 1
	}
	conn, err := grpc.NewClient(*addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		fmt.Fprintf(stderr, "psavctl status: %v\n", err)
		return 1
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	st, err := acspb.NewACSClient(conn).Status(ctx, &acspb.StatusRequest{})
	if err != nil {
		fmt.Fprintf(stderr, "psavctl status: %s: %v\n", *addr, err)
		return 1
	}
	if *asJSON {
		b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(st)
		if err != nil {
			fmt.Fprintf(stderr, "psavctl status: %v\n", err)
			return 1
		}
		var v any // re-indent through encoding/json for a stable layout
		_ = json.Unmarshal(b, &v)
		out, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(stdout, string(out))
		return 0
	}
	printStatus(stdout, st, time.Now())
	return 0
}

func printStatus(w io.Writer, st *acspb.StatusReply, now time.Time) {
	fmt.Fprintf(w, "ACS of AS%d, epoch %d, tables version %d\n", st.Asn, st.Epoch, st.TablesVersion)
	fmt.Fprintf(w, "membership: %d members %v, digest %s\n", len(st.Members), st.Members, short(st.MembershipDigest))
	if len(st.Abrs) > 0 {
		fmt.Fprintf(w, "ABRs fed: %v\n", st.Abrs)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPEER\tSTATE\tRTT\tOFFSET\tLAST HEARTBEAT\tMISSED\tSTART EPOCH\tTLS GROUP")
	for _, p := range st.Peers {
		last := "-"
		if p.LastHeartbeatUnixNano > 0 {
			last = now.Sub(time.Unix(0, p.LastHeartbeatUnixNano)).Round(time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "AS%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", p.Asn, p.State,
			time.Duration(p.RttNanos).Round(time.Microsecond), time.Duration(p.OffsetNanos).Round(time.Microsecond),
			last, p.MissedHeartbeats, p.StartEpoch, p.TlsGroup)
	}
	tw.Flush()
}

func short(b []byte) string {
	if len(b) > 8 {
		b = b[:8]
	}
	return hex.EncodeToString(b) + "…"
}
