package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/psavd/psavd/control/membership"
)

func (a *app) keyCommand() *cobra.Command {
	return a.group(&cobra.Command{
		Use:   "key",
		Short: "make keys for AS records, community endorsements and TLS",
	}, a.keyGenerateCommand())
}

// keyGenerateCommand is psavctl key generate -out F [-alg
// ed25519|ecdsa-p256]: a fresh private key written as PKCS #8 PEM (mode
// 0600, never over an existing file); stdout is one line, the public key in
// the text form of [[acs.community]] keys and membership.ParsePublicKey.
// The same key file serves as an AS key (record new -key), a community key
// (record endorse -key) and, for ecdsa-p256 or ed25519, a TLS key (cert
// request -key).
func (a *app) keyGenerateCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "generate -out F [-alg ed25519|ecdsa-p256]",
		Short: "write a new private key and print its public key",
		Long: `Writes a new private key to -out (PKCS #8 PEM, mode 0600; an existing file
is never overwritten) and prints its public key as ed25519:<base64> or
ecdsa-p256:<base64>, the form [[acs.community]] keys takes. The key serves
as an AS key (record new -key), a community key (record endorse -key) and a
TLS key (cert request -key).`,
	}
	var out, alg string
	c.Flags().StringVar(&out, "out", "", "where to write the private key `FILE` (PKCS #8 PEM, mode 0600; must not exist; required)")
	c.Flags().StringVar(&alg, "alg", "ed25519", "key algorithm `ALG`: ed25519 or ecdsa-p256")
	return a.leaf(c, noArgs, func(*cobra.Command, []string) int { return keyGenerate(out, alg, a.stdout, a.stderr) })
}

func keyGenerate(out, alg string, stdout, stderr io.Writer) int {
	if out == "" {
		fmt.Fprintln(stderr, "psavctl key generate: need -out FILE")
		return 2
	}
	var a membership.Alg
	switch alg {
	case membership.AlgEd25519.String():
		a = membership.AlgEd25519
	case membership.AlgECDSAP256.String():
		a = membership.AlgECDSAP256
	default:
		fmt.Fprintf(stderr, "psavctl key generate: -alg %q: want ed25519 or ecdsa-p256\n", alg)
		return 2
	}
	s, err := membership.GenerateSigner(a)
	if err == nil {
		var b []byte
		if b, err = membership.MarshalSignerPEM(s); err == nil {
			err = writeNew(out, b, 0o600)
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
