// Command psavctl is psavd's operator tool: the local node through its
// management socket, joining an alliance from files, and a few remote views
// and tools. `psavctl --help` lists the commands, `psavctl CMD --help` one
// command's flags; the man pages (make man) and the shell completions
// (psavctl completion bash|zsh|fish) are generated from the same command
// tree, so help, man pages and completion cannot disagree.
//
//	psavctl [-socket PATH] status|tables|members|map-cache|registrations|counters|reload [-json]
//	    the local node through its management socket ([control] socket,
//	    default /run/psavd/psavd.sock), no certificates. status and tables
//	    with -acs, counters with -metrics, are the remote forms.
//	psavctl [-socket PATH] record submit -in RECORD
//	psavctl key generate | record new|endorse|show | cert request | ca init|sign
//	    joining an alliance from files, without code (docs/join.md).
//	psavctl decent index -mode draft|lispers.net -mask N -modulus M -suffix S EID
//	psavctl dns -server HOST:PORT -tls-name NAME -ca FILE [-count N] QNAME [A|AAAA]
//	psavctl top -metrics HOST:PORT [-interval 1s] [-n N]
//
// The command line is parsed by cobra (github.com/spf13/cobra), whose flags
// (pflag) are GNU-style: --json, -h. DESIGN §4.2 and every script and doc
// spell psavctl's flags with one dash, as Go's flag package did (-json,
// -socket PATH, -mode draft), so before parsing singleDashLong rewrites a
// single-dash word of two or more letters into the double-dash form. Both
// spellings work; no flag has a one-letter shorthand but -h, so the rewrite
// never changes what a shorthand cluster meant. Kong would have needed the
// same rewrite (its short flags are single letters too); cobra was chosen
// for its completion (bash, zsh, fish) and man page generation (cobra/doc).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/psavd/psavd/control/mgmtpb"
	"github.com/psavd/psavd/internal/buildinfo"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// app is one invocation of psavctl: where its output goes and the flags
// every command shares.
type app struct {
	stdout, stderr io.Writer
	socket         string // -socket: the local node's management socket
}

// exitCode ends psavctl with that code; the command has already said why.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// run is psavctl with args (after the program name): the exit code is 0 on
// success (and for -h, --help, --version), 1 when the command failed, 2 for
// a usage error (unknown command or flag, missing or extra arguments).
func run(args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(singleDashLong(root, args))
	cmd, err := root.ExecuteC()
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	default: // cobra's own: an unknown command or flag, bad arguments
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stderr, "%s: %v\n", cmd.CommandPath(), err)
		usageHint(stderr, cmd)
		return 2
	}
}

// usageHint is what follows a usage error: the command's synopsis and where
// to read more.
func usageHint(w io.Writer, cmd *cobra.Command) {
	fmt.Fprintf(w, "usage: %s\nRun '%s --help' for more.\n", cmd.UseLine(), cmd.CommandPath())
}

const rootLong = `psavctl is psavd's operator tool.

Without -acs or -metrics, status, tables, members, map-cache, registrations,
counters, reload and record submit talk to the local node through its
management socket ([control] socket, default /run/psavd/psavd.sock; -socket
PATH names another), without certificates. status and tables with -acs
(and an op certificate) ask an ACS over mutual TLS; counters with -metrics
reads a node's /metrics.

key, record, cert and ca join an alliance from files, without code
(docs/join.md): keys, signed and endorsed membership records, certificate
requests and a small CA.

Flags take one dash or two: -json and --json are the same flag.
Exit status: 0 on success, 1 when the command failed, 2 for a usage error.`

// rootCommand builds psavctl's command tree, fresh for each run (the flags
// are bound to this invocation's variables).
func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:     "psavctl [-socket PATH] COMMAND",
		Short:   "operate psavd nodes and join a PSAV alliance",
		Long:    rootLong,
		Version: buildinfo.Get().Version,
		// No Args: with subcommands, cobra refuses an unknown command word.
		RunE: func(c *cobra.Command, _ []string) error {
			fmt.Fprint(a.stderr, c.UsageString())
			return exitCode(2) // a command is needed
		},
		SilenceErrors:     true, // run prints them, with the usage line
		SilenceUsage:      true,
		DisableAutoGenTag: true, // man pages: no "generated on <today>" history
		// psavctl completion is defined below, with psavctl's help text.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetVersionTemplate(buildinfo.Line("psavctl") + "\n")
	// No -v shorthand: every flag is a word (see singleDashLong).
	root.Flags().Bool("version", false, "print psavctl's version, commit and Go version, and exit")
	root.DisableFlagsInUseLine = true
	root.PersistentFlags().StringVar(&a.socket, "socket", mgmtpb.DefaultSocket, "the local node's management socket `PATH` ([control] socket)")
	root.AddGroup(
		&cobra.Group{ID: "node", Title: "The local node, through its management socket:"},
		&cobra.Group{ID: "join", Title: "Joining an alliance (files only):"},
		&cobra.Group{ID: "tools", Title: "Other nodes and tools:"},
	)
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("node", a.statusCommand(), a.tablesCommand(), a.membersCommand(), a.mapCacheCommand(),
		a.registrationsCommand(), a.countersCommand(), a.reloadCommand())
	add("join", a.keyCommand(), a.recordCommand(), a.certCommand(), a.caCommand())
	add("tools", a.decentCommand(), a.dnsCommand(), a.topCommand())
	root.AddCommand(a.completionCommand(), a.versionCommand(), a.manCommand())
	root.InitDefaultHelpCmd() // now, so that singleDashLong sees psavctl help
	return root
}

// leaf fills in a command that does the work: body gets the positional
// arguments (checked by args), prints its output and errors itself and
// returns the exit code; a 2 (usage error) is followed by the usage line.
func (a *app) leaf(c *cobra.Command, args cobra.PositionalArgs, body func(c *cobra.Command, args []string) int) *cobra.Command {
	c.Args = args
	c.RunE = func(c *cobra.Command, pos []string) error {
		code := body(c, pos)
		if code == 2 {
			usageHint(a.stderr, c)
		}
		if code != 0 {
			return exitCode(code)
		}
		return nil
	}
	return c
}

// group is a command that only holds subcommands (psavctl record …):
// without one, or with an unknown one, it is a usage error.
func (a *app) group(c *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	c.Use += " COMMAND"
	c.DisableFlagsInUseLine = true
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			fmt.Fprintf(a.stderr, "%s: unknown command %q\n", c.CommandPath(), args[0])
		} else {
			fmt.Fprintf(a.stderr, "%s: which one?\n", c.CommandPath())
		}
		fmt.Fprint(a.stderr, c.UsageString())
		return exitCode(2)
	}
	c.AddCommand(subs...)
	return c
}

// noArgs refuses positional arguments.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q", args[0])
	}
	return nil
}

// exactArgs wants n positional arguments, what they are.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("need %s, got %d arguments", what, len(args))
		}
		return nil
	}
}

// singleDashLong rewrites psavctl's documented single-dash flags into
// pflag's spelling: -json → --json, -socket=P → --socket=P, -mode draft →
// --mode draft, -n 3 → --n 3 (a one-letter flag of top; -h stays -h). It follows the command words through the tree so that it
// knows which flags take a value: that value is passed on untouched even if
// it starts with a dash, and a positional argument is never mistaken for a
// command. Everything after "--" is left alone. An unknown -word becomes
// --word too, so that pflag's error names the flag as typed. For the hidden
// __complete command of the completion scripts, all but the word being
// completed are rewritten.
func singleDashLong(root *cobra.Command, args []string) []string {
	if len(args) > 0 && strings.HasPrefix(args[0], "__complete") {
		if len(args) < 2 {
			return args
		}
		mid := singleDashLong(root, args[1:len(args)-1])
		return append(append([]string{args[0]}, mid...), args[len(args)-1])
	}
	out := make([]string, 0, len(args))
	cmd, positional := root, false
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			return append(out, args[i:]...)
		case len(arg) >= 2 && arg[0] == '-' && arg[1] != '-':
			name, _, inline := strings.Cut(arg[1:], "=")
			f := lookupFlag(cmd, name)
			if len(name) == 1 && f == nil {
				out = append(out, arg) // a shorthand: -h
				continue
			}
			out = append(out, "-"+arg)
			if f != nil && !inline && f.NoOptDefVal == "" && i+1 < len(args) {
				i++
				out = append(out, args[i]) // the flag's value
			}
		case strings.HasPrefix(arg, "--"):
			name, _, inline := strings.Cut(arg[2:], "=")
			out = append(out, arg)
			if f := lookupFlag(cmd, name); f != nil && !inline && f.NoOptDefVal == "" && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
		default:
			out = append(out, arg)
			if positional {
				continue
			}
			if sub := subcommand(cmd, arg); sub != nil {
				cmd = sub
			} else {
				positional = true
			}
		}
	}
	return out
}

// lookupFlag finds a flag of cmd or one it inherits.
func lookupFlag(cmd *cobra.Command, name string) *pflag.Flag {
	for c := cmd; c != nil; c = c.Parent() {
		if f := c.Flags().Lookup(name); f != nil {
			return f
		}
		if f := c.PersistentFlags().Lookup(name); f != nil {
			return f
		}
	}
	return nil
}

// subcommand is cmd's subcommand called name (or an alias), if any.
func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	return nil
}

func (a *app) versionCommand() *cobra.Command {
	return a.leaf(&cobra.Command{
		Use:   "version",
		Short: "print psavctl's version line (as --version)",
	}, noArgs, func(*cobra.Command, []string) int {
		fmt.Fprintln(a.stdout, buildinfo.Line("psavctl"))
		return 0
	})
}
