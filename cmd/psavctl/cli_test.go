package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The documented single-dash spellings become pflag's, values (even ones
// that start with a dash) and positional arguments are left alone, -h stays
// a shorthand, and nothing after -- is touched.
func TestSingleDashLong(t *testing.T) {
	root := (&app{stdout: io.Discard, stderr: io.Discard}).rootCommand()
	for _, c := range []struct{ in, want []string }{
		{[]string{"-socket", "/run/x.sock", "status", "-json"}, []string{"--socket", "/run/x.sock", "status", "--json"}},
		{[]string{"-socket=/run/x.sock", "members"}, []string{"--socket=/run/x.sock", "members"}},
		{[]string{"status", "-json", "-socket", "/s"}, []string{"status", "--json", "--socket", "/s"}},
		{[]string{"decent", "index", "-mode", "draft", "-mask", "8", "-modulus", "16", "-suffix", "s", "[0]240.0.1.0/24"},
			[]string{"decent", "index", "--mode", "draft", "--mask", "8", "--modulus", "16", "--suffix", "s", "[0]240.0.1.0/24"}},
		// record show R: R is positional, not a command; -community-key takes a value.
		{[]string{"record", "show", "-community-key", "ed25519:AAA", "status", "-json"},
			[]string{"record", "show", "--community-key", "ed25519:AAA", "status", "--json"}},
		// A value that looks like a flag is the flag's value.
		{[]string{"record", "new", "-out", "-json", "-asn", "1"}, []string{"record", "new", "--out", "-json", "--asn", "1"}},
		// top's one-letter -n is a long flag; -h is the help shorthand.
		{[]string{"top", "-metrics", "h:1", "-n", "3"}, []string{"top", "--metrics", "h:1", "--n", "3"}},
		{[]string{"dns", "-h"}, []string{"dns", "-h"}},
		{[]string{"dns", "-help"}, []string{"dns", "--help"}},
		{[]string{"-version"}, []string{"--version"}},
		// Unknown flags are rewritten too, so pflag names them as typed.
		{[]string{"dns", "-bogus"}, []string{"dns", "--bogus"}},
		{[]string{"--json", "status", "--timeout", "1s"}, []string{"--json", "status", "--timeout", "1s"}},
		{[]string{"record", "show", "--", "-r.rec"}, []string{"record", "show", "--", "-r.rec"}},
		// The completion scripts' __complete: all but the word being completed.
		{[]string{"__complete", "record", "new", "-asn", "1", "-ki"}, []string{"__complete", "record", "new", "--asn", "1", "-ki"}},
	} {
		if got := singleDashLong(root, c.in); !slices.Equal(got, c.want) {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

// Usage errors exit 2 and say usage; help and version exit 0.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"nonsense"}, 2},
		{[]string{"record"}, 2},
		{[]string{"record", "bogus"}, 2},
		{[]string{"record", "show"}, 2},
		{[]string{"record", "show", "a", "b"}, 2},
		{[]string{"key", "generate"}, 2},
		{[]string{"key", "generate", "-out", filepath.Join(dir, "k"), "extra"}, 2},
		{[]string{"key", "generate", "-out"}, 2}, // flag needs an argument
		{[]string{"status", "-cert", "x.pem"}, 2},
		{[]string{"status", "-acs", "127.0.0.1:1"}, 2}, // no -asn, -cert, …
		{[]string{"counters", "-all"}, 2},
		{[]string{"status", "-json=maybe"}, 2},
		{[]string{"top", "-n", "x", "-metrics", "h:1"}, 2},
		{[]string{"completion", "tcsh"}, 2},
		{[]string{"completion"}, 2},
		{[]string{"--version", "extra"}, 2},
		{[]string{"help"}, 0},
		{[]string{"help", "record", "new"}, 0},
		{[]string{"-help"}, 0},
		{[]string{"record", "-h"}, 0},
		{[]string{"record", "new", "--help"}, 0},
		{[]string{"version"}, 0},
		{[]string{"-version"}, 0},
		{[]string{"-socket", filepath.Join(dir, "none.sock"), "status"}, 1}, // no node there
	} {
		code, out, errs := ctl(c.args...)
		if code != c.code {
			t.Errorf("psavctl %q: exit %d, want %d\n%s%s", c.args, code, c.code, out, errs)
		}
		if c.code == 2 && !strings.Contains(strings.ToLower(errs), "usage") {
			t.Errorf("psavctl %q: no usage on stderr:\n%s", c.args, errs)
		}
		if c.code == 0 && errs != "" {
			t.Errorf("psavctl %q: stderr %q", c.args, errs)
		}
	}
	// Version: one line, on stdout.
	_, v1, _ := ctl("--version")
	_, v2, _ := ctl("version")
	if v1 != v2 || !strings.HasPrefix(v1, "psavctl ") || strings.Count(v1, "\n") != 1 {
		t.Errorf("--version %q, version %q", v1, v2)
	}
	// Help lists every command, on stdout.
	_, help, _ := ctl("--help")
	for _, want := range []string{"status", "map-cache", "registrations", "record", "decent", "completion", "-socket"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

// visible is every command of the tree a user sees (not help, not hidden).
func visible(c *cobra.Command) []*cobra.Command {
	out := []*cobra.Command{c}
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() && !s.IsAdditionalHelpTopicCommand() {
			out = append(out, visible(s)...)
		}
	}
	return out
}

// gen-man writes one page per visible command, each naming the command
// and its flags, dated by SOURCE_DATE_EPOCH (reproducible), and no page for
// the hidden generator itself.
func TestManPages(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1767225600") // 2026-01-01
	dir := t.TempDir()
	if code, out, errs := ctl("gen-man", "-dir", dir); code != 0 {
		t.Fatalf("gen-man: exit %d\n%s%s", code, out, errs)
	}
	root := (&app{stdout: io.Discard, stderr: io.Discard}).rootCommand()
	want := map[string]bool{}
	for _, c := range visible(root) {
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		want[name] = true
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("no man page for %s: %v", c.CommandPath(), err)
			continue
		}
		page := string(b)
		if !strings.Contains(page, `.TH "`+strings.ToUpper(strings.TrimSuffix(name, ".1"))+`" "1" "Jan 2026" "psavd `) {
			t.Errorf("%s: header:\n%.200s", name, page)
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if !strings.Contains(page, `\fB--`+f.Name+`\fP`) {
				t.Errorf("%s does not document --%s", name, f.Name)
			}
		})
	}
	for _, must := range []string{"psavctl.1", "psavctl-status.1", "psavctl-record-new.1", "psavctl-decent-index.1", "psavctl-completion.1"} {
		if !want[must] {
			t.Errorf("no command for %s", must)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !want[e.Name()] {
			t.Errorf("unexpected page %s", e.Name())
		}
	}
	// The same pages again: byte for byte (no date of today, no map order).
	again := t.TempDir()
	ctl("gen-man", "-dir", again)
	for name := range want {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(again, name))
		if string(a) != string(b) {
			t.Errorf("%s differs between two runs", name)
		}
	}
}

// The bash completion script, sourced into a real bash, completes commands
// and flags by asking the built psavctl (on PATH, as installed); zsh and
// fish scripts are generated.
func TestCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "psavctl"), ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	script := filepath.Join(dir, "psavctl.bash")
	code, out, errs := ctl("completion", "bash")
	if code != 0 || !strings.Contains(out, "__start_psavctl") {
		t.Fatalf("completion bash: exit %d %s", code, errs)
	}
	if err := os.WriteFile(script, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(line string) []string {
		t.Helper()
		// What bash does on TAB: COMP_WORDS and COMP_CWORD for the line,
		// then the function the script registered for psavctl. The script
		// takes the words from bash-completion's _init_completion; where
		// that package is not installed, the same for a plain line of
		// words (no = or : to split on).
		prog := `[[ -r /usr/share/bash-completion/bash_completion ]] && source /usr/share/bash-completion/bash_completion
			if ! declare -F _init_completion >/dev/null; then
				_init_completion() { words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; cur=${words[cword]}; prev=${words[cword-1]}; }
			fi
			source "$1"; COMP_LINE="$2"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<<"$COMP_LINE"
			[[ $COMP_LINE == *" " ]] && COMP_WORDS+=("")
			COMP_CWORD=$((${#COMP_WORDS[@]}-1)); __start_psavctl; printf '%s\n' "${COMPREPLY[@]}"`
		cmd := exec.Command(bash, "--norc", "--noprofile", "-c", prog, "bash", script, line)
		cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
		var stderr strings.Builder
		cmd.Stderr = &stderr // compopt complains outside a real completion
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("completing %q: %v\n%s%s", line, err, b, stderr.String())
		}
		var words []string
		for _, w := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			words = append(words, strings.TrimSpace(w))
		}
		return words
	}
	has := func(words []string, w string) bool {
		for _, x := range words {
			if x == w || strings.HasPrefix(x, w+" ") {
				return true
			}
		}
		return false
	}
	if got := complete("psavctl sta"); !has(got, "status") {
		t.Errorf("psavctl sta<TAB>: %q", got)
	}
	if got := complete("psavctl record "); !has(got, "new") || !has(got, "submit") || has(got, "status") {
		t.Errorf("psavctl record <TAB>: %q", got)
	}
	if got := complete("psavctl record new --pre"); !has(got, "--prefix") {
		t.Errorf("psavctl record new --pre<TAB>: %q", got)
	}
	if got := complete("psavctl completion "); !has(got, "bash") || !has(got, "fish") {
		t.Errorf("psavctl completion <TAB>: %q", got)
	}
	if got := complete("psavctl gen"); has(got, "gen-man") {
		t.Errorf("the hidden gen-man is offered: %q", got)
	}
	for shell, want := range map[string]string{"zsh": "#compdef psavctl", "fish": "complete -c psavctl"} {
		if code, out, errs := ctl("completion", shell); code != 0 || !strings.Contains(out, want) {
			t.Errorf("completion %s: exit %d, lacks %q: %s", shell, code, want, errs)
		}
	}
}
