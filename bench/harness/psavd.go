package harness

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/psavd/psavd/bench"
)

// fillerASNBase is the first member AS holding filler prefixes; each holds
// up to fillerPerAS of them.
const (
	fillerASNBase = 65100
	fillerPerAS   = 100_000
)

// WritePsavdConfig writes psavd's configuration for a measurement to w:
// bench.PsavdConfig (AS 65001 with its prefixes, member AS 65002 with its
// prefixes, the static peer, the ports) plus prefixes−4 filler member
// prefixes, so that the AS-Prefix table holds prefixes entries. Fillers
// alternate IPv4 /24s counted up from 16.0.0.0 and IPv6 /48s counted up from
// 2a00::/48, in member ASes 65100, 65101, … (100,000 each); none covers an
// address the frames use.
func WritePsavdConfig(w io.Writer, env bench.Env, keys bench.Keys, validating bool, prefixes int) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := io.WriteString(bw, bench.PsavdConfig(env, keys, validating)); err != nil {
		return err
	}
	n := max(prefixes-MinPrefixes, 0)
	for i := 0; i < n; i++ {
		if i%fillerPerAS == 0 {
			if i > 0 {
				fmt.Fprint(bw, "]\n")
			}
			fmt.Fprintf(bw, "\n[[psav.member]]\nasn = %d\nprefixes = [\n", fillerASNBase+i/fillerPerAS)
		}
		j := i / 2
		if i%2 == 0 {
			a := uint32(16)<<24 + uint32(j)<<8
			fmt.Fprintf(bw, "\"%d.%d.%d.0/24\",\n", a>>24, a>>16&0xff, a>>8&0xff)
		} else {
			fmt.Fprintf(bw, "\"2a00:%x:%x::/48\",\n", j>>16, j&0xffff)
		}
	}
	if n > 0 {
		fmt.Fprint(bw, "]\n")
	}
	return bw.Flush()
}

// psavdDUT is psavd run with WritePsavdConfig's configuration (written to
// dir) in the middle namespace, ready when it logs "ready".
func psavdDUT(bin, dir string, keys bench.Keys, validating bool, prefixes int, out io.Writer) *bench.Command {
	label := CaseTag
	if validating {
		label = CaseValidate
	}
	return &bench.Command{
		Label:  label,
		Ready:  "ready",
		Output: out,
		Argv: func(env bench.Env) ([]string, error) {
			path := filepath.Join(dir, label+".toml")
			f, err := os.Create(path)
			if err != nil {
				return nil, err
			}
			if err := WritePsavdConfig(f, env, keys, validating, prefixes); err != nil {
				f.Close()
				return nil, err
			}
			return []string{bin, "-config", path}, f.Close()
		},
	}
}
