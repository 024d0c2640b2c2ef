package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/mgmtpb"
)

// socketPath is the local node's management socket: -socket PATH before the
// command, else the default.
var socketPath = mgmtpb.DefaultSocket

// localFlags are the flags of a command that talks to the local node.
type localFlags struct {
	fs      *flag.FlagSet
	asJSON  *bool
	timeout *time.Duration
}

func newLocalFlags(name string, stderr io.Writer) *localFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &localFlags{fs: fs,
		asJSON:  fs.Bool("json", false, "print JSON"),
		timeout: fs.Duration("timeout", 10*time.Second, "how long to wait for the node")}
}

// call parses args, dials the socket and runs do with a client; it prints
// the reply as JSON (-json) or with text.
func (f *localFlags) call(name string, args []string, stdout, stderr io.Writer,
	do func(context.Context, mgmtpb.ManagementClient) (proto.Message, error), text func(io.Writer, proto.Message)) int {
	if err := f.fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if f.fs.NArg() != 0 {
		return fail(stderr, name, fmt.Errorf("unexpected argument %q: %w", f.fs.Arg(0), errUsage))
	}
	return runLocal(name, *f.timeout, *f.asJSON, stdout, stderr, do, text)
}

func runLocal(name string, timeout time.Duration, asJSON bool, stdout, stderr io.Writer,
	do func(context.Context, mgmtpb.ManagementClient) (proto.Message, error), text func(io.Writer, proto.Message)) int {
	if _, err := os.Stat(socketPath); err != nil {
		return fail(stderr, name, fmt.Errorf("no node's control socket at %s (is psavd running? -socket PATH names another): %w", socketPath, err))
	}
	conn, err := grpc.NewClient("unix://"+socketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fail(stderr, name, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	m, err := do(ctx, mgmtpb.NewManagementClient(conn))
	if err != nil {
		return fail(stderr, name, fmt.Errorf("%s: %w", socketPath, err))
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

// hasFlag reports whether args name flag (as -flag or -flag=…): the remote
// forms of status, tables and counters are chosen by their flags.
func hasFlag(args []string, flag string) bool {
	for _, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == flag || strings.HasPrefix(a, flag+"=") {
			return true
		}
	}
	return false
}

func localStatus(args []string, stdout, stderr io.Writer) int {
	return newLocalFlags("status", stderr).call("status", args, stdout, stderr,
		func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
			return c.Status(ctx, &mgmtpb.StatusRequest{})
		}, func(w io.Writer, m proto.Message) {
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
		})
}

func localTables(args []string, stdout, stderr io.Writer) int {
	return newLocalFlags("tables", stderr).call("tables", args, stdout, stderr,
		func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
			t, err := c.Tables(ctx, &mgmtpb.TablesRequest{})
			if err != nil {
				return nil, err
			}
			return redactKeys(t), nil // keys never leave the node, not even to its operator
		}, func(w io.Writer, m proto.Message) { printTables(w, m.(*acspb.Tables)) })
}

func localMembers(args []string, stdout, stderr io.Writer) int {
	return newLocalFlags("members", stderr).call("members", args, stdout, stderr,
		func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
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

func localMapCache(args []string, stdout, stderr io.Writer) int {
	return newLocalFlags("map-cache", stderr).call("map-cache", args, stdout, stderr,
		func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
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

func localRegistrations(args []string, stdout, stderr io.Writer) int {
	return newLocalFlags("registrations", stderr).call("registrations", args, stdout, stderr,
		func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
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

func localCounters(args []string, stdout, stderr io.Writer) int {
	return newLocalFlags("counters", stderr).call("counters", args, stdout, stderr,
		func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
			return c.Counters(ctx, &mgmtpb.CountersRequest{})
		}, func(w io.Writer, m proto.Message) {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "port\tcounter\tpackets")
			for _, p := range m.(*mgmtpb.CountersReply).GetPorts() {
				for _, c := range p.GetCounts() {
					fmt.Fprintf(tw, "%s\t%s\t%d\n", p.GetPort(), c.GetName(), c.GetPackets())
				}
			}
			tw.Flush()
		})
}

func localReload(args []string, stdout, stderr io.Writer) int {
	f := newLocalFlags("reload", stderr)
	applied := true
	code := f.call("reload", args, stdout, stderr,
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
}

// recordSubmit is `psavctl record submit -in R`: the record goes to the
// local node's ACS, which verifies, stores and floods it.
func recordSubmit(args []string, stdout, stderr io.Writer) int {
	f := newLocalFlags("record submit", stderr)
	in := f.fs.String("in", "", "the signed (and endorsed) record file")
	stored := true
	code := f.call("record submit", args, stdout, stderr,
		func(ctx context.Context, c mgmtpb.ManagementClient) (proto.Message, error) {
			if *in == "" {
				return nil, errors.New("need -in RECORD")
			}
			rec, err := os.ReadFile(*in)
			if err != nil {
				return nil, err
			}
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
}
