// Command psavctl is psavd's operator tool. Subcommands:
//
//	psavctl [-socket PATH] status|tables|members|map-cache|registrations|counters|reload [-json]
//	    the local node through its management socket ([control] socket,
//	    default /run/psavd/psavd.sock), no certificates: roles and
//	    readiness, the ACS's tables and membership, the xTR's map-cache, the
//	    Map-Server's registrations, the data plane's counters, a reload and
//	    its outcome. status and tables with -acs, counters with -metrics,
//	    are the remote forms below.
//	psavctl [-socket PATH] record submit -in RECORD
//	    hands a signed membership record to the local node's ACS.
//	psavctl key generate | record new|endorse|show | cert request | ca init|sign
//	    joining an alliance from files, without code (docs/join.md): keys,
//	    signed and endorsed membership records, certificate requests and a
//	    small CA (key.go, record.go, cert.go, ca.go).
//	psavctl decent index -mode draft|lispers.net -mask N -modulus M -suffix S EID
//	    the index and DNS name that own an EID string such as [0]240.0.1.0/24
//	    (docs/wire.md §3.4, §4.2): first line the index alone, second the name.
//	psavctl dns -server HOST:PORT -tls-name NAME -ca FILE [-count N] QNAME [A|AAAA]
//	    a look-up through the ADoT client (docs/wire.md §4.2), N times over one
//	    persistent connection: answers, and per query the TLS session (new or
//	    resumed) and the round-trip time.
//	psavctl status -acs HOST:PORT -asn N -cert F -key F -ca F [-json]
//	    an ACS's view: epoch, peers (state, RTT, clock offset, last
//	    heartbeat, TLS group), membership, ABRs — over mutual TLS.
//	psavctl tables -acs HOST:PORT -asn N -cert F -key F -ca F [-json]
//	    the tables the ACS of the operator's AS pushes to its ABRs: members
//	    with prefixes and tag/validate peers, key epochs per peer (keys shown
//	    as fingerprints only), community-border replace entries.
//	psavctl counters -metrics HOST:PORT [-json] [-all]
//	    a node's data-plane counters from its /metrics: per port frames
//	    received and sent, actions, drops by reason; the AF_XDP sockets'
//	    ring counters.
//	psavctl top -metrics HOST:PORT [-interval 1s] [-n N]
//	    the same as per-second rates, one block per interval, until
//	    interrupted (or N blocks).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/psavd/psavd/control/decent/pull"
	"github.com/psavd/psavd/internal/buildinfo"
)

const usage = `usage:
  psavctl --version
  psavctl [-socket PATH] status|tables|members|map-cache|registrations|counters|reload [-json]
      the local node through its management socket (default /run/psavd/psavd.sock)
  psavctl [-socket PATH] record submit -in RECORD
  psavctl key generate -out F [-alg ed25519|ecdsa-p256]
  psavctl record new -kind join|update|exit -asn N [-ascn C] -version V -prefix P ... -acs HOST:PORT ... -key ASKEY -out R
  psavctl record endorse -in R -key COMMUNITYKEY -out R2
  psavctl record show R [-json] [-community-key ed25519:...]
  psavctl cert request -role acs|abr|op -asn N [-name NAME] [-legacy] -key KEY -out CSR
  psavctl ca init -out-cert CA.pem -out-key CA.key [-name N] [-days D]
  psavctl ca sign -ca CA.pem -ca-key CA.key -csr CSR -out CERT [-days D] [-legacy]
  psavctl decent index -mode draft|lispers.net -mask N -modulus M -suffix S EID
  psavctl status -acs HOST:PORT -asn N -cert F -key F -ca F [-json]
  psavctl tables -acs HOST:PORT -asn N -cert F -key F -ca F [-json]
  psavctl dns -server HOST:PORT -tls-name NAME -ca FILE [-count N] [-new-conn] QNAME [A|AAAA]
  psavctl counters -metrics HOST:PORT [-json] [-all]
  psavctl top -metrics HOST:PORT [-interval 1s] [-n N]
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// A command takes its arguments (after its name) and says its exit code.
type command func(args []string, stdout, stderr io.Writer) int

// commands are psavctl's one-word commands.
var commands = map[string]command{
	// The local node, through its management socket.
	"status": localStatus, "tables": localTables, "members": localMembers, "map-cache": localMapCache,
	"registrations": localRegistrations, "counters": localCounters, "reload": localReload,
	// Remote, or no node at all.
	"dns": dnsLookup, "top": top,
}

// twoWordCommands are the commands named by two words.
var twoWordCommands = map[string]command{
	"record submit": recordSubmit, // to the local node's ACS
	// Joining: keys, records, certificates, a small CA (files only).
	"key generate": keyGenerate, "record new": recordNew, "record endorse": recordEndorse, "record show": recordShow,
	"cert request": certRequest, "ca init": caInit, "ca sign": caSign,
	"decent index": decentIndex,
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usage)
			return 0
		case "-version", "--version", "version":
			fmt.Fprintln(stdout, buildinfo.Line("psavctl"))
			return 0
		}
	}
	if len(args) >= 2 && (args[0] == "-socket" || args[0] == "--socket") {
		socketPath, args = args[1], args[2:]
	} else if len(args) >= 1 && (strings.HasPrefix(args[0], "-socket=") || strings.HasPrefix(args[0], "--socket=")) {
		_, socketPath, _ = strings.Cut(args[0], "=")
		args = args[1:]
	}
	if len(args) >= 2 {
		if cmd, ok := twoWordCommands[args[0]+" "+args[1]]; ok {
			return cmd(args[2:], stdout, stderr)
		}
	}
	if len(args) >= 1 {
		rest := args[1:]
		// status and tables with -acs, counters with -metrics, are the
		// remote forms; without, the local node through its socket.
		switch {
		case args[0] == "status" && hasFlag(rest, "acs"):
			return status(rest, stdout, stderr)
		case args[0] == "tables" && hasFlag(rest, "acs"):
			return tables(rest, stdout, stderr)
		case args[0] == "counters" && hasFlag(rest, "metrics"):
			return counters(rest, stdout, stderr)
		}
		if cmd, ok := commands[args[0]]; ok {
			return cmd(rest, stdout, stderr)
		}
	}
	fmt.Fprint(stderr, usage)
	return 2
}

func decentIndex(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("decent index", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "draft", "hash mode: draft or lispers.net")
	mask := fs.Int("mask", 0, "hash mask in octets (draft mode; 0: hash the whole string)")
	modulus := fs.Uint64("modulus", 0, "number of map-server names (required)")
	suffix := fs.String("suffix", "", "DNS suffix, e.g. map-server.example.test (required)")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() != 1 || *modulus == 0 || *suffix == "" {
		fmt.Fprint(stderr, "psavctl decent index: need -modulus, -suffix and one EID string such as [0]240.0.1.0/24\n")
		return 2
	}
	m, err := pull.ParseMode(*mode)
	if err != nil {
		fmt.Fprintf(stderr, "psavctl decent index: -mode: %v\n", err)
		return 2
	}
	if m == pull.ModeLispersNet && *mask != 0 {
		fmt.Fprintln(stderr, "psavctl decent index: note: lispers.net mode has no hash mask; -mask ignored")
	}
	i, err := pull.Index(m, fs.Arg(0), *mask, *modulus)
	if err != nil {
		fmt.Fprintf(stderr, "psavctl decent index: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%d\n%s\n", i, pull.Name(i, *suffix))
	return 0
}

// flagExit is the exit code after a flag set's Parse failed: 0 for -h
// (usage was asked for and printed), 2 for a bad flag.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
