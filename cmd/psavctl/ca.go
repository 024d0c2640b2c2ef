package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/psavd/psavd/control/pki"
)

func (a *app) caCommand() *cobra.Command {
	return a.group(&cobra.Command{
		Use:   "ca",
		Short: "a small CA for a lab or a small alliance",
		Long: `A small file-based CA: ca init makes one, ca sign issues a certificate for a
request from cert request. An existing CA (openssl, step-ca) does as well
(docs/join.md).`,
	}, a.caInitCommand(), a.caSignCommand())
}

// caInitCommand is psavctl ca init: a self-signed ECDSA P-256 CA for a lab
// or a small alliance, its certificate (PEM) and its key (PKCS #8 PEM, mode
// 0600; neither file may exist). stdout: one line naming the CA.
func (a *app) caInitCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "init -out-cert CA.pem -out-key CA.key [-name N] [-days D]",
		Short: "make a self-signed alliance CA",
		Long: `Makes a self-signed ECDSA P-256 CA: its certificate (PEM) to -out-cert and
its key (PKCS #8 PEM, mode 0600) to -out-key; neither file may exist.`,
	}
	var outCert, outKey, name string
	var days int
	c.Flags().StringVar(&outCert, "out-cert", "", "where to write the CA certificate `FILE` (PEM; required)")
	c.Flags().StringVar(&outKey, "out-key", "", "where to write the CA key `FILE` (PKCS #8 PEM, mode 0600; required)")
	c.Flags().StringVar(&name, "name", "psavd alliance CA", "the CA's common `NAME`")
	c.Flags().IntVar(&days, "days", 3650, "validity in `DAYS`")
	return a.leaf(c, noArgs, func(*cobra.Command, []string) int {
		return caInit(outCert, outKey, name, days, a.stdout, a.stderr)
	})
}

func caInit(outCert, outKey, name string, days int, stdout, stderr io.Writer) int {
	if outCert == "" || outKey == "" {
		fmt.Fprintln(stderr, "psavctl ca init: need -out-cert and -out-key")
		return 2
	}
	if _, err := os.Stat(outCert); err == nil {
		fmt.Fprintf(stderr, "psavctl ca init: %s exists; not overwriting it\n", outCert)
		return 1
	}
	ca, certPEM, keyPEM, err := pki.NewCA(name, days)
	if err == nil {
		if err = writeNew(outKey, keyPEM, 0o600); err == nil {
			if err = writeNew(outCert, certPEM, 0o644); err != nil {
				os.Remove(outKey)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "psavctl ca init: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "CA %q, valid until %s\n", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	return 0
}

// caSignCommand is psavctl ca sign: a certificate for a CSR from cert
// request, for TLS server and client authentication, if the CSR's signature
// verifies and its only SAN is one well-formed psav role URI. stdout: one
// line, the URI, serial and expiry.
func (a *app) caSignCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "sign -ca CA.pem -ca-key CA.key -csr CSR -out CERT [-days D]",
		Short: "issue a certificate for a request from cert request",
		Long: `Issues a certificate (PEM, for TLS server and client authentication) for
the request -csr if its signature verifies and its only subject alternative
name is one well-formed psav role URI (psav:as<N>:acs, :abr:<name> or
:op:<name>). Prints the URI, the serial and the expiry.`,
	}
	var caCert, caKey, csr, out string
	var days int
	c.Flags().StringVar(&caCert, "ca", "", "the CA certificate `FILE` (PEM; required)")
	c.Flags().StringVar(&caKey, "ca-key", "", "the CA key `FILE` (PKCS #8 PEM; required)")
	c.Flags().StringVar(&csr, "csr", "", "the request `FILE` (PEM or DER; required)")
	c.Flags().StringVar(&out, "out", "", "where to write the certificate `FILE` (PEM; required)")
	c.Flags().IntVar(&days, "days", 365, "validity in `DAYS` (at most the CA's)")
	return a.leaf(c, noArgs, func(*cobra.Command, []string) int {
		return caSign(caCert, caKey, csr, out, days, a.stdout, a.stderr)
	})
}

func caSign(caCert, caKey, csr, out string, days int, stdout, stderr io.Writer) int {
	fail := func(code int, f string, a ...any) int {
		fmt.Fprintf(stderr, "psavctl ca sign: "+f+"\n", a...)
		return code
	}
	if caCert == "" || caKey == "" || csr == "" || out == "" {
		return fail(2, "need -ca, -ca-key, -csr and -out")
	}
	var files [3][]byte
	for i, p := range []string{caCert, caKey, csr} {
		b, err := os.ReadFile(p)
		if err != nil {
			return fail(1, "%v", err)
		}
		files[i] = b
	}
	ca, err := pki.LoadCA(files[0], files[1])
	if err != nil {
		return fail(1, "%v", err)
	}
	der, id, err := ca.Sign(files[2], days, false)
	if err != nil {
		return fail(1, "%s: %v", csr, err)
	}
	if err := os.WriteFile(out, pki.CertPEM(der), 0o644); err != nil {
		return fail(1, "%v", err)
	}
	c, err := pki.ParseCertificatePEM(pki.CertPEM(der))
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintf(stdout, "%s: %s, serial %x, valid until %s\n", out, id, c.SerialNumber, c.NotAfter.UTC().Format(time.RFC3339))
	return 0
}
