package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/psavd/psavd/internal/buildinfo"
)

const completionLong = `Prints a completion script for bash, zsh or fish; it completes commands,
flags and their values by asking psavctl itself (psavctl __complete), so it
never lags behind the binary.

  bash: psavctl completion bash > /usr/share/bash-completion/completions/psavctl
        (the .deb installs it; for one shell: source <(psavctl completion bash))
  zsh:  psavctl completion zsh > "${fpath[1]}/_psavctl"
  fish: psavctl completion fish > ~/.config/fish/completions/psavctl.fish`

// completionCommand is psavctl completion bash|zsh|fish.
func (a *app) completionCommand() *cobra.Command {
	c := &cobra.Command{
		Use:       "completion bash|zsh|fish",
		Short:     "print a shell completion script",
		Long:      completionLong,
		ValidArgs: []string{"bash", "zsh", "fish"},
	}
	return a.leaf(c, exactArgs(1, "a shell: bash, zsh or fish"), func(c *cobra.Command, args []string) int {
		root := c.Root()
		var err error
		switch args[0] {
		case "bash":
			err = root.GenBashCompletionV2(a.stdout, true)
		case "zsh":
			err = root.GenZshCompletion(a.stdout)
		case "fish":
			err = root.GenFishCompletion(a.stdout, true)
		default:
			fmt.Fprintf(a.stderr, "psavctl completion: %q: want bash, zsh or fish\n", args[0])
			return 2
		}
		if err != nil {
			fmt.Fprintf(a.stderr, "psavctl completion: %v\n", err)
			return 1
		}
		return 0
	})
}

// manCommand is the hidden psavctl gen-man -dir DIR that make man runs: one
// man page (section 1) per command, from the same tree as --help. The date
// is SOURCE_DATE_EPOCH's (make man passes the commit's) for reproducible
// pages, today's without it.
func (a *app) manCommand() *cobra.Command {
	var dir string
	c := &cobra.Command{
		Use:    "gen-man -dir DIR",
		Short:  "write psavctl's man pages into DIR",
		Hidden: true,
	}
	c.Flags().StringVar(&dir, "dir", "", "the `DIR`ectory to write the pages into (required)")
	return a.leaf(c, noArgs, func(c *cobra.Command, _ []string) int {
		if dir == "" {
			fmt.Fprintln(a.stderr, "psavctl gen-man: need -dir DIR")
			return 2
		}
		if err := genMan(c.Root(), dir); err != nil {
			fmt.Fprintf(a.stderr, "psavctl gen-man: %v\n", err)
			return 1
		}
		return 0
	})
}

// genMan writes root's man pages into dir: psavctl.1, psavctl-status.1,
// psavctl-record-new.1, ….
func genMan(root *cobra.Command, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	header := &doc.GenManHeader{
		Section: "1",
		Source:  "psavd " + buildinfo.Get().Version,
		Manual:  "psavd manual",
	}
	if err := doc.GenManTree(root, header, dir); err != nil {
		return fmt.Errorf("%s: %w", filepath.Clean(dir), err)
	}
	return nil
}
