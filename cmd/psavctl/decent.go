package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/psavd/psavd/control/decent/pull"
)

func (a *app) decentCommand() *cobra.Command {
	return a.group(&cobra.Command{
		Use:   "decent",
		Short: "LISP-Decent: which map-server name owns an EID",
	}, a.decentIndexCommand())
}

// decentIndexCommand is psavctl decent index (docs/wire.md §3.4, §4.2): the
// index and DNS name that own an EID string, first line the index alone,
// second the name.
func (a *app) decentIndexCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "index -mode draft|lispers.net -mask N -modulus M -suffix S EID",
		Short: "print the index and DNS name that own an EID string",
		Long: `Prints the LISP-Decent index and the map-server DNS name that own an EID
string such as [0]240.0.1.0/24: the first line is the index alone, the
second the name (<index>.<suffix>).`,
		Example: "  psavctl decent index -mode draft -mask 8 -modulus 16 -suffix map-server.example.test '[0]240.0.1.0/24'",
	}
	var mode, suffix string
	var mask int
	var modulus uint64
	c.Flags().StringVar(&mode, "mode", "draft", "hash `MODE`: draft or lispers.net")
	c.Flags().IntVar(&mask, "mask", 0, "hash mask in octets `N` (draft mode; 0: hash the whole string)")
	c.Flags().Uint64Var(&modulus, "modulus", 0, "number `M` of map-server names (required)")
	c.Flags().StringVar(&suffix, "suffix", "", "DNS `SUFFIX`, e.g. map-server.example.test (required)")
	return a.leaf(c, cobra.ArbitraryArgs, func(_ *cobra.Command, args []string) int {
		stdout, stderr := a.stdout, a.stderr
		if len(args) != 1 || modulus == 0 || suffix == "" {
			fmt.Fprint(stderr, "psavctl decent index: need -modulus, -suffix and one EID string such as [0]240.0.1.0/24\n")
			return 2
		}
		m, err := pull.ParseMode(mode)
		if err != nil {
			fmt.Fprintf(stderr, "psavctl decent index: -mode: %v\n", err)
			return 2
		}
		if m == pull.ModeLispersNet && mask != 0 {
			fmt.Fprintln(stderr, "psavctl decent index: note: lispers.net mode has no hash mask; -mask ignored")
		}
		i, err := pull.Index(m, args[0], mask, modulus)
		if err != nil {
			fmt.Fprintf(stderr, "psavctl decent index: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%d\n%s\n", i, pull.Name(i, suffix))
		return 0
	})
}
