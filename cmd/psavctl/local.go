package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/mgmtpb"
)

// localCall is how a command reaches the local node: -json and -timeout.
type localCall struct {
	asJSON  bool
	timeout time.Duration
}

// localFlags adds -json and -timeout to a command answered by the local node.
func localFlags(c *cobra.Command) *localCall {
	l := &localCall{}
	c.Flags().BoolVar(&l.asJSON, "json", false, "print JSON")
	c.Flags().DurationVar(&l.timeout, "timeout", 10*time.Second, "how long to wait for the node")
	return l
}

// localCommand is a command answered by the local node through its socket:
// do asks, text prints the reply (-json prints it as JSON).
func (a *app) localCommand(c *cobra.Command, do func(context.Context, mgmtpb.ManagementClient) (proto.Message, error),
	text func(io.Writer, proto.Message)) *cobra.Command {
	l := localFlags(c)
	return a.leaf(c, noArgs, func(c *cobra.Command, _ []string) int {
		return a.runLocal(c.CommandPath(), l.timeout, l.asJSON, do, text)
	})
}

// runLocal dials the management socket and runs do with a client; it prints
// the reply as JSON (asJSON) or with text.
func (a *app) runLocal(name string, timeout time.Duration, asJSON bool,
	do func(context.Context, mgmtpb.ManagementClient) (proto.Message, error), text func(io.Writer, proto.Message)) int {
	stdout, stderr := a.stdout, a.stderr
	name = strings.TrimPrefix(name, "psavctl ")
	if _, err := os.Stat(a.socket); err != nil {
		return fail(stderr, name, fmt.Errorf("no node's control socket at %s (is psavd running? -socket PATH names another): %w", a.socket, err))
	}
	// "unix://" takes an absolute path: a relative -socket would be read
	// as an authority ("unix://as65001/psavd.sock").
	path, err := filepath.Abs(a.socket)
	if err != nil {
		return fail(stderr, name, err)
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fail(stderr, name, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := do(ctx, mgmtpb.NewManagementClient(conn))
	if err != nil {
		return fail(stderr, name, fmt.Errorf("%s: %w", a.socket, err))
	}
	if asJSON {
		if err := printJSON(stdout, m); err != nil {
			return fail(stderr, name, err)
		}
		return 0
	}
	text(stdout, m)
	return 0
}

// askStatus and printNodeStatus are psavctl status through the socket: the
// node's roles and readiness, and its ACS's view if it runs one.
func askStatus(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
	return c.Status(ctx, &mgmtpb.StatusRequest{})
}

func printNodeStatus(w io.Writer, m proto.Message) {
	st := m.(*mgmtpb.StatusReply)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "node\t%s\n", st.GetVersion())
	fmt.Fprintf(tw, "config\t%s\n", st.GetConfig())
	if st.GetAsn() != 0 {
		fmt.Fprintf(tw, "asn\t%d\n", st.GetAsn())
	}
	ready := "yes"
	if !st.GetReady() {
		ready = "no (" + strings.Join(st.GetNotReady(), ", ") + ")"
	}
	fmt.Fprintf(tw, "ready\t%s\n", ready)
	fmt.Fprintf(tw, "up since\t%s\n", time.Unix(st.GetStartedUnix(), 0).UTC().Format(time.RFC3339))
	if st.GetEpoch() >= 0 {
		fmt.Fprintf(tw, "epoch\t%d\n", st.GetEpoch())
	}
	if s := st.GetAbrFeedState(); s != "" {
		fmt.Fprintf(tw, "ACS feed\t%s\n", s)
	}
	fmt.Fprintln(tw, "\nrole\tpolicy\tstate\trestarts\tlast error")
	for _, r := range st.GetRoles() {
		state := "up"
		if !r.GetUp() {
			state = "down"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", r.GetName(), r.GetPolicy(), state, r.GetRestarts(), r.GetLastError())
	}
	tw.Flush()
	if a := st.GetAcs(); a != nil {
		fmt.Fprintln(w, "\nACS:")
		printStatus(w, a, time.Now())
	}
}

// askTables is psavctl tables through the socket: the tables the node's ACS
// pushes to its ABRs.
func askTables(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
	return c.Tables(ctx, &mgmtpb.TablesRequest{}) // the node has already replaced every key by its fingerprint (acspb.Redacted)
}

func printTablesReply(w io.Writer, m proto.Message) { printTables(w, m.(*acspb.Tables)) }

func (a *app) membersCommand() *cobra.Command {
	return a.localCommand(&cobra.Command{
		Use:   "members",
		Short: "the membership records the node's ACS holds, and their digest",
	}, func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
		return c.Members(ctx, &mgmtpb.MembersRequest{})
	}, func(w io.Writer, m proto.Message) {
		r := m.(*mgmtpb.MembersReply)
		fmt.Fprintf(w, "membership digest %s, %d records\n", r.GetDigest(), len(r.GetMembers()))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "asn\tascn\tversion\tkind\tprefixes\tacs\tkey")
		for _, mr := range r.GetMembers() {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\n", mr.GetAsn(), mr.GetAscn(), mr.GetVersion(), mr.GetKind(),
				strings.Join(mr.GetPrefixes(), ","), strings.Join(mr.GetAcs(), ","), mr.GetKey())
		}
		tw.Flush()
	})
}

func locators(ls []*mgmtpb.Locator) string {
	var s []string
	for _, l := range ls {
		st := "up"
		if !l.GetUp() {
			st = "down"
		}
		s = append(s, fmt.Sprintf("%s p%d w%d %s", l.GetAddress(), l.GetPriority(), l.GetWeight(), st))
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, "; ")
}

func (a *app) mapCacheCommand() *cobra.Command {
	return a.localCommand(&cobra.Command{
		Use:   "map-cache",
		Short: "the xTR's LISP map-cache: EIDs, locators, expiry",
	}, func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
		return c.MapCache(ctx, &mgmtpb.MapCacheRequest{})
	}, func(w io.Writer, m proto.Message) {
		r := m.(*mgmtpb.MapCacheReply)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "iid\teid\texpires\tlocators")
		for _, e := range r.GetEntries() {
			loc := locators(e.GetLocators())
			if e.GetNegative() {
				loc = "negative"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.GetInstanceId(), e.GetEid(), time.Until(time.Unix(e.GetExpiresUnix(), 0)).Round(time.Second), loc)
		}
		tw.Flush()
	})
}

func (a *app) registrationsCommand() *cobra.Command {
	return a.localCommand(&cobra.Command{
		Use:   "registrations",
		Short: "the Map-Server's registrations: site, EID, ETR, locators",
	}, func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
		return c.Registrations(ctx, &mgmtpb.RegistrationsRequest{})
	}, func(w io.Writer, m proto.Message) {
		r := m.(*mgmtpb.RegistrationsReply)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "site\tiid\teid\tetr\texpires\tlocators")
		for _, g := range r.GetRegistrations() {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", g.GetSite(), g.GetInstanceId(), g.GetEid(), g.GetEtr(),
				time.Until(time.Unix(g.GetExpiresUnix(), 0)).Round(time.Second), locators(g.GetLocators()))
		}
		tw.Flush()
	})
}

// askCounters and printCountersReply are psavctl counters through the
// socket: the data plane's counters per port.
func askCounters(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
	return c.Counters(ctx, &mgmtpb.CountersRequest{})
}

func printCountersReply(w io.Writer, m proto.Message) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "port\tcounter\tpackets")
	for _, p := range m.(*mgmtpb.CountersReply).GetPorts() {
		for _, c := range p.GetCounts() {
			fmt.Fprintf(tw, "%s\t%s\t%d\n", p.GetPort(), c.GetName(), c.GetPackets())
		}
	}
	tw.Flush()
}

func (a *app) reloadCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "reload",
		Short: "re-read the node's configuration and print the outcome",
		Long: `Asks the node to re-read its configuration (as SIGHUP does) and prints the
outcome and any problems. Exit status 1 when the node refused the new
configuration: the running one stays.`,
	}
	l := localFlags(c)
	return a.leaf(c, noArgs, func(c *cobra.Command, _ []string) int {
		applied := true
		code := a.runLocal("reload", l.timeout, l.asJSON,
			func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
				r, err := c.Reload(ctx, &mgmtpb.ReloadRequest{})
				if err == nil {
					applied = r.GetApplied()
				}
				return r, err
			}, func(w io.Writer, m proto.Message) {
				r := m.(*mgmtpb.ReloadReply)
				fmt.Fprintln(w, r.GetOutcome())
				for _, p := range r.GetProblems() {
					fmt.Fprintln(w, p)
				}
			})
		if code == 0 && !applied {
			return 1 // refused: the running configuration stays
		}
		return code
	})
}

// recordSubmitCommand is `psavctl record submit -in R`: the record goes to
// the local node's ACS, which verifies, stores and floods it.
func (a *app) recordSubmitCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "submit -in RECORD",
		Short: "hand a signed record (join, update or exit) to the local node's ACS",
		Long: `Hands a signed and endorsed membership record to the ACS of the local node
(through its management socket), which verifies, stores and floods it to
every member. Exit status 1 when the ACS does not store it (the reason is
printed).`,
	}
	l := localFlags(c)
	var in string
	c.Flags().StringVar(&in, "in", "", "the signed (and endorsed) record `FILE` (required)")
	return a.leaf(c, noArgs, func(c *cobra.Command, _ []string) int {
		if in == "" {
			fmt.Fprintln(a.stderr, "psavctl record submit: need -in RECORD")
			return 2
		}
		rec, err := os.ReadFile(in)
		if err != nil {
			return fail(a.stderr, "record submit", err)
		}
		stored := true
		code := a.runLocal("record submit", l.timeout, l.asJSON,
			func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
				r, err := c.SubmitRecord(ctx, &mgmtpb.SubmitRecordRequest{Record: rec})
				if err == nil {
					stored = r.GetStored()
				}
				return r, err
			}, func(w io.Writer, m proto.Message) {
				r := m.(*mgmtpb.SubmitRecordReply)
				if r.GetStored() {
					fmt.Fprintln(w, "stored: the ACS floods it to every member")
				} else {
					fmt.Fprintf(w, "not stored: %s\n", r.GetReason())
				}
			})
		if code == 0 && !stored {
			return 1
		}
		return code
	})
}
