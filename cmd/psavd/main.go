// Command psavd is the PSAV border router: one binary for every role
// engine.toml gives it (docs/wire.md §1). Subcommands:
//
//	psavd [run] -config engine.toml     run a node
//	psavd check -config engine.toml     validate a configuration, start nothing
//	psavd replay -config F -in IN.pcap -out OUT.pcap [-at UNIX] [-port NAME]
//	psavd lab [-topology F] [-n N] [-v] build the lab in namespaces and show PSAV at work
//	                                    (execs the psavlab binary next to psavd or in PATH)
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/psavd/psavd/internal/buildinfo"
)

const usage = `usage:
  psavd --version
  psavd [run] -config engine.toml
  psavd check -config engine.toml
  psavd replay -config engine.toml -in in.pcap -out out.pcap [-at UNIX_SECONDS] [-port NAME]
  psavd lab [-topology topology.toml] [-n PACKETS_PER_FLOW] [-v]
`

func main() {
	args := os.Args[1:]
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) == 1 {
		switch args[0] {
		case "-h", "-help", "--help", "-version", "--version":
			cmd, args = args[0], nil
		}
	}
	var code int
	switch cmd {
	case "run":
		code = runCmd(args)
	case "check":
		code = checkCmd(args)
	case "replay":
		code = replayCmd(args)
	case "lab":
		code = labCmd(args)
	case "help", "-h", "-help", "--help":
		fmt.Print(usage)
	case "version", "-version", "--version":
		fmt.Println(buildinfo.Line("psavd"))
	default:
		fmt.Fprintf(os.Stderr, "psavd: unknown command %q\n%s", cmd, usage)
		code = 2
	}
	os.Exit(code)
}

// flagExit is the exit code after a flag set's Parse failed: 0 for -h
// (usage was asked for and printed), 2 for a bad flag.
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
