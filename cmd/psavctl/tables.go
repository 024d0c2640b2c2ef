package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/pki"
)

const tablesLong = `Without -acs: the tables the local node's ACS pushes to its ABRs, through
the management socket. With -acs HOST:PORT -asn N -cert F -key F -ca F: the
same from the ACS of the operator's own AS, over mutual TLS, with an
operator certificate of the AS (psav:as<N>:op:<name>, from cert request
-role op): the ACS answers its operators with the tables it feeds its ABRs,
keys already replaced by their fingerprints.

The AS-Prefix table with each member's tag and validate peer, the epochs
each peer's keys cover, and the community-border replace entries. Keys are
secrets: only a short fingerprint of each is shown (SHA-256 of the key,
first 4 octets), enough to compare the two sides of a pair.`

func (a *app) tablesCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "tables [-acs HOST:PORT -asn N -cert F -key F -ca F]",
		Short: "the AS-Prefix table, key epochs and replace entries the ABRs get",
		Long:  tablesLong,
	}
	return a.acsCommand(c, func(l *localCall) int {
		return a.runLocal("tables", l.timeout, l.asJSON, askTables, printTablesReply)
	}, a.remoteTables)
}

// remoteTables asks an ACS of the operator's own AS for the tables it
// pushes to its ABRs.
func (a *app) remoteTables(f *acsFlags, timeout time.Duration, asJSON bool) int {
	stdout, stderr := a.stdout, a.stderr
	conn, own, err := f.dial(pki.RoleOp) // operator calls take op certificates
	if err != nil {
		return fail(stderr, "tables", err)
	}
	defer conn.Close()
	if f.target != 0 && uint32(f.target) != own.ASN {
		return fail(stderr, "tables", fmt.Errorf("an ACS answers only the operators of its own AS: -target-asn must be -asn: %w", errUsage))
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t, err := acspb.NewACSClient(conn).OperatorTables(ctx, &acspb.TablesRequest{})
	if err != nil {
		return fail(stderr, "tables", fmt.Errorf("%s: %w", f.addr, err))
	}
	if asJSON {
		if err := printJSON(stdout, t); err != nil {
			return fail(stderr, "tables", err)
		}
		return 0
	}
	printTables(stdout, t)
	return 0
}

func printTables(w io.Writer, t *acspb.Tables) {
	fmt.Fprintf(w, "tables of AS%d, version %d, epochs of %d s from t0 = %d\n", t.LocalAsn, t.Version, t.PeriodSeconds, t.T0)
	peer := func(i int32) string {
		if i < 0 || int(i) >= len(t.Peers) {
			return "-"
		}
		return fmt.Sprintf("AS%d", t.Peers[i].Asn)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nMEMBER\tTAG PEER\tVALIDATE PEER\tPREFIXES")
	for _, m := range t.Members {
		name := fmt.Sprintf("AS%d", m.Asn)
		if m.Local {
			name += " (local)"
		}
		var ps []string
		for _, p := range m.Prefixes {
			if a, ok := netip.AddrFromSlice(p.Addr); ok {
				ps = append(ps, netip.PrefixFrom(a, int(p.Bits)).String())
			}
		}
		sort.Strings(ps)
		tag, val := peer(m.TagPeer), peer(m.ValidatePeer)
		if m.Local {
			tag, val = "", ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\n", name, tag, val, ps)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPEER\tEPOCHS (key fingerprint)")
	for _, p := range t.Peers {
		var ks string
		for _, k := range p.Keys {
			ks += fmt.Sprintf("%d (%s)  ", k.Epoch, k.GetFingerprint())
		}
		fmt.Fprintf(tw, "AS%d\t%s\n", p.Asn, ks)
	}
	tw.Flush()
	if len(t.Replace) > 0 {
		member := func(i uint32) string {
			if int(i) >= len(t.Members) {
				return "?"
			}
			return fmt.Sprintf("AS%d", t.Members[i].Asn)
		}
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "\nREPLACE (community border)\tFROM\tTO\tVALIDATE WITH\tTAG WITH")
		for _, r := range t.Replace {
			fmt.Fprintf(tw, "\t%s\t%s\t%s\t%s\n", member(r.SrcMember), member(r.DstMember), peer(r.InPeer), peer(r.OutPeer))
		}
		tw.Flush()
	}
}
