package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/psavd/psavd/control/abr"
	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/pki"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// acsFlags are the flags of the remote forms of status and tables, which
// ask an ACS over mutual TLS with an operator's certificate.
type acsFlags struct {
	addr, cert, key, ca string
	asn, target         uint
}

func addACSFlags(c *cobra.Command) *acsFlags {
	f := &acsFlags{}
	fs := c.Flags()
	fs.StringVar(&f.addr, "acs", "", "ask this ACS, `HOST:PORT`, over mutual TLS (the remote form)")
	fs.UintVar(&f.asn, "asn", 0, "with -acs: the AS `N` the certificate names")
	fs.UintVar(&f.target, "target-asn", 0, "with -acs: the AS `N` of the ACS asked (default: -asn)")
	fs.StringVar(&f.cert, "cert", "", "with -acs: an operator certificate `FILE` of the AS (PEM; psav:as<N>:op:<name>)")
	fs.StringVar(&f.key, "key", "", "with -acs: its key `FILE` (PEM)")
	fs.StringVar(&f.ca, "ca", "", "with -acs: the alliance CA bundle `FILE` (PEM)")
	return f
}

// acsCommand is a command with a local form (through the management
// socket: local) and a remote form against an ACS (-acs …: remote), the
// shape of status and tables.
func (a *app) acsCommand(c *cobra.Command, local func(l *localCall) int, remote func(f *acsFlags, timeout time.Duration, asJSON bool) int) *cobra.Command {
	l := localFlags(c)
	noteRemoteTimeout(c)
	f := addACSFlags(c)
	name := c.Name()
	return a.leaf(c, noArgs, func(c *cobra.Command, _ []string) int {
		if f.addr == "" {
			if n := remoteOnly(c, "asn", "target-asn", "cert", "key", "ca"); n != "" {
				fmt.Fprintf(a.stderr, "psavctl %s: -%s is for an ACS: give -acs HOST:PORT too\n", name, n)
				return 2
			}
			return local(l)
		}
		return remote(f, remoteTimeout(c, l), l.asJSON)
	})
}

// remoteOnly names a flag of the remote form given without -acs, if any.
func remoteOnly(c *cobra.Command, names ...string) string {
	for _, n := range names {
		if c.Flags().Changed(n) {
			return n
		}
	}
	return ""
}

// noteRemoteTimeout says in -timeout's help that a remote form waits 5s.
func noteRemoteTimeout(c *cobra.Command) {
	c.Flags().Lookup("timeout").Usage = "how long to wait for the node (5s for a remote one unless given)"
}

// remoteTimeout is -timeout for a remote form: 5s unless given.
func remoteTimeout(c *cobra.Command, l *localCall) time.Duration {
	if c.Flags().Changed("timeout") {
		return l.timeout
	}
	return 5 * time.Second
}

// dial opens a gRPC connection to the ACS over mutual TLS 1.3 with a
// certificate of role (op for the operator calls status and tables: what
// the ACS's listener accepts for them, docs/wire.md §3.1). For the ACS of the
// certificate's own AS the ABR's check of the server applies (same AS), for
// another AS's ACS the peer check.
func (f *acsFlags) dial(role pki.Role) (*grpc.ClientConn, pki.Identity, error) {
	if f.addr == "" || f.asn == 0 || f.cert == "" || f.key == "" || f.ca == "" {
		return nil, pki.Identity{}, fmt.Errorf("need -acs, -asn, -cert, -key and -ca: %w", errUsage)
	}
	id, err := pair.LoadIdentity(uint32(f.asn), role, f.cert, f.key, f.ca)
	if err != nil {
		return nil, pki.Identity{}, err
	}
	own, err := pair.CertIdentity(id.Cert.Leaf) // LoadIdentity checked it
	if err != nil {
		return nil, pki.Identity{}, err
	}
	t := uint32(f.target)
	if t == 0 {
		t = id.ASN
	}
	tlsCfg, err := pair.ClientConfig(id, t)
	if t == id.ASN {
		tlsCfg, err = abr.TLSConfig(id, t)
	}
	if err != nil {
		return nil, pki.Identity{}, err
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	return conn, own, err
}

var errUsage = errors.New("usage")

// fail prints a subcommand's error; usage errors exit 2, others 1.
func fail(stderr io.Writer, name string, err error) int {
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

const statusLong = `Without -acs: the local node through its management socket — its version,
configuration, readiness (and what it waits for), epoch, ABR feed state,
every role with its restart policy, state, restarts and last error, and
the ACS's view if it runs one.

With -acs HOST:PORT -asn N -cert F -key F -ca F: an ACS's view over mutual
TLS, with an operator's certificate of the ACS's AS (psav:as<N>:op:<name>,
from cert request -role op) — epoch, peers (state, RTT, clock
offset, last heartbeat, TLS group), membership, ABRs. -target-asn names
another AS's ACS.`

func (a *app) statusCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "status [-acs HOST:PORT -asn N -cert F -key F -ca F [-target-asn N]]",
		Short: "the node's roles and readiness, or an ACS's peers (-acs)",
		Long:  statusLong,
	}
	return a.acsCommand(c, func(l *localCall) int {
		return a.runLocal("status", l.timeout, l.asJSON, askStatus, printNodeStatus)
	}, a.remoteStatus)
}

// remoteStatus asks an ACS for its Status: epoch, peers, membership, ABRs.
func (a *app) remoteStatus(f *acsFlags, timeout time.Duration, asJSON bool) int {
	conn, _, err := f.dial(pki.RoleOp)
	if err != nil {
		return fail(a.stderr, "status", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	st, err := acspb.NewACSClient(conn).Status(ctx, &acspb.StatusRequest{})
	if err != nil {
		return fail(a.stderr, "status", fmt.Errorf("%s: %w", f.addr, err))
	}
	if asJSON {
		if err := printJSON(a.stdout, st); err != nil {
			return fail(a.stderr, "status", err)
		}
		return 0
	}
	printStatus(a.stdout, st, time.Now())
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
