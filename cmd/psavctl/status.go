package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
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
	"google.golang.org/protobuf/proto"
)

// acsFlags are the flags of the subcommands that talk to an ACS.
type acsFlags struct {
	fs                  *flag.FlagSet
	addr, cert, key, ca *string
	asn, target         *uint
	asJSON              *bool
	timeout             *time.Duration
}

func newACSFlags(name string, stderr io.Writer) *acsFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &acsFlags{
		fs:      fs,
		addr:    fs.String("acs", "", "the ACS, host:port"),
		asn:     fs.Uint("asn", 0, "the AS the certificate names"),
		target:  fs.Uint("target-asn", 0, "the AS of the ACS asked (default: -asn)"),
		cert:    fs.String("cert", "", "certificate (PEM)"),
		key:     fs.String("key", "", "key (PEM)"),
		ca:      fs.String("ca", "", "alliance CA bundle (PEM)"),
		asJSON:  fs.Bool("json", false, "print JSON"),
		timeout: fs.Duration("timeout", 5*time.Second, "how long to wait"),
	}
}

// dial parses args and opens a gRPC connection to the ACS over mutual TLS
// 1.3. The operator's certificate names an AS of the alliance; for the ACS
// of that same AS the ABR's check applies (same AS), for another AS's ACS
// the peer check.
func (f *acsFlags) dial(args []string) (*grpc.ClientConn, uint32, error) {
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, flag.ErrHelp
		}
		return nil, 0, errUsage
	}
	if *f.addr == "" || *f.asn == 0 || *f.cert == "" || *f.key == "" || *f.ca == "" {
		return nil, 0, fmt.Errorf("need -acs, -asn, -cert, -key and -ca: %w", errUsage)
	}
	id, err := pair.LoadIdentity(uint32(*f.asn), *f.cert, *f.key, *f.ca)
	if err != nil {
		return nil, 0, err
	}
	t := uint32(*f.target)
	if t == 0 {
		t = id.ASN
	}
	tlsCfg, err := pair.ClientConfig(id, t)
	if t == id.ASN {
		tlsCfg, err = abr.TLSConfig(id, t)
	}
	if err != nil {
		return nil, 0, err
	}
	conn, err := grpc.NewClient(*f.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	return conn, id.ASN, err
}

var errUsage = errors.New("usage")

// fail prints a subcommand's error; usage errors exit 2, others 1.
func fail(stderr io.Writer, name string, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0 // -h: usage was printed
	}
	if errors.Is(err, errUsage) {
		if err != errUsage {
			fmt.Fprintf(stderr, "psavctl %s: %v\n", name, err)
		}
		return 2
	}
	fmt.Fprintf(stderr, "psavctl %s: %v\n", name, err)
	return 1
}

// printJSON prints a protobuf message as indented JSON with every field.
func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	var v any // re-indent through encoding/json for a stable layout
	_ = json.Unmarshal(b, &v)
	out, _ := json.MarshalIndent(v, "", "  ")
	_, err = fmt.Fprintln(w, string(out))
	return err
}

// status asks an ACS for its Status: epoch, peers, membership, ABRs.
func status(args []string, stdout, stderr io.Writer) int {
	f := newACSFlags("status", stderr)
	conn, _, err := f.dial(args)
	if err != nil {
		return fail(stderr, "status", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *f.timeout)
	defer cancel()
	st, err := acspb.NewACSClient(conn).Status(ctx, &acspb.StatusRequest{})
	if err != nil {
		return fail(stderr, "status", fmt.Errorf("%s: %w", *f.addr, err))
	}
	if *f.asJSON {
		if err := printJSON(stdout, st); err != nil {
			return fail(stderr, "status", err)
		}
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
