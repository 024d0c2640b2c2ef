package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/psavd/psavd/control/config"
)

// checkCmd is `psavd check`: exit 0 when the file is sound, otherwise 1 with
// one line per problem (file: key: reason) on stderr.
func checkCmd(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("config", "engine.toml", "configuration file")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if _, err := config.Load(*path); err != nil {
		printProblems(err)
		return 1
	}
	fmt.Printf("%s: ok\n", *path)
	return 0
}

func printProblems(err error) {
	var ps config.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Fprintln(os.Stderr, p)
		}
		return
	}
	fmt.Fprintln(os.Stderr, err)
}
