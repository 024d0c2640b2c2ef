package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/psavd/psavd/control/membership"
)

// keyGenerate is psavctl key generate -out F [-alg ed25519|ecdsa-p256]: a
// fresh private key written as PKCS #8 PEM (mode 0600, never over an
// existing file); stdout is one line, the public key in the text form of
// [[acs.community]] keys and membership.ParsePublicKey. The same key file
// serves as an AS key (record new -key), a community key (record endorse
// -key) and, for ecdsa-p256 or ed25519, a TLS key (cert request -key).
func keyGenerate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("key generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "where to write the private key (PKCS #8 PEM, mode 0600; must not exist)")
	alg := fs.String("alg", "ed25519", "ed25519 or ecdsa-p256")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "psavctl key generate: need -out FILE (and no arguments)")
		return 2
	}
	var a membership.Alg
	switch *alg {
	case membership.AlgEd25519.String():
		a = membership.AlgEd25519
	case membership.AlgECDSAP256.String():
		a = membership.AlgECDSAP256
	default:
		fmt.Fprintf(stderr, "psavctl key generate: -alg %q: want ed25519 or ecdsa-p256\n", *alg)
		return 2
	}
	s, err := membership.GenerateSigner(a)
	if err == nil {
		var b []byte
		if b, err = membership.MarshalSignerPEM(s); err == nil {
			err = writeNew(*out, b, 0o600)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "psavctl key generate: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, s.Public())
	return 0
}

// writeNew writes data to a file that must not exist yet (O_EXCL): keys
// are never overwritten by accident.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; not overwriting it", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// loadSigner reads a membership signing key (PKCS #8 PEM).
func loadSigner(path string) (membership.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := membership.ParseSignerPEM(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// parseInterspersed parses flags that may come before or after the
// positional arguments (psavctl record show R -json), returning the
// positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
