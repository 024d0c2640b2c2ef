package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/psavd/psavd/control/pki"
)

func (a *app) certCommand() *cobra.Command {
	return a.group(&cobra.Command{
		Use:   "cert",
		Short: "certificate requests for an ACS, an ABR or an operator",
	}, a.certRequestCommand())
}

// certRequestCommand is psavctl cert request: a PKCS #10 CSR (PEM) whose
// only SAN is the identity's URI of docs/wire.md §3.1 — psav:as<N>:acs,
// psav:as<N>:abr:<name> or psav:as<N>:op:<name> — for a key from key
// generate (ecdsa-p256 or ed25519). stdout: one line, the URI.
func (a *app) certRequestCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "request -role acs|abr|op -asn N [-name NAME] -key KEY -out CSR",
		Short: "write a certificate signing request for a role of an AS",
		Long: `Writes a PKCS #10 certificate signing request (PEM) for the key -key whose
only subject alternative name is the role's URI (docs/wire.md §3.1):
psav:as<N>:acs for the AS's ACS, psav:as<N>:abr:<name> for an ABR,
psav:as<N>:op:<name> for an operator (psavctl status -acs). Prints the URI.
Any CA may sign it: psavctl ca sign, openssl, step-ca (docs/join.md).`,
	}
	var role, name, key, out string
	var asn uint64
	c.Flags().StringVar(&role, "role", "acs", "the `ROLE`: acs, abr or op")
	c.Flags().Uint64Var(&asn, "asn", 0, "the AS number `N` (required)")
	c.Flags().StringVar(&name, "name", "", "the ABR's or operator's `NAME`, 1–63 of [a-z0-9-] (not for acs)")
	c.Flags().StringVar(&key, "key", "", "the private key `FILE` (PKCS #8 PEM, from key generate; required)")
	c.Flags().StringVar(&out, "out", "", "where to write the CSR `FILE` (PEM; required)")
	return a.leaf(c, noArgs, func(*cobra.Command, []string) int {
		return certRequest(role, asn, name, key, out, a.stdout, a.stderr)
	})
}

func certRequest(role string, asn uint64, name, key, out string, stdout, stderr io.Writer) int {
	fail := func(code int, f string, a ...any) int {
		fmt.Fprintf(stderr, "psavctl cert request: "+f+"\n", a...)
		return code
	}
	if asn == 0 || asn > 1<<32-1 || key == "" || out == "" {
		return fail(2, "need -asn (1…4294967295), -key and -out")
	}
	r, err := pki.ParseRole(role)
	if err != nil {
		return fail(2, "-role: %v", err)
	}
	id := pki.Identity{ASN: uint32(asn), Role: r, Name: name}
	if err := id.Validate(); err != nil {
		return fail(2, "%v", err)
	}
	kb, err := os.ReadFile(key)
	if err != nil {
		return fail(1, "%v", err)
	}
	k, err := pki.ParseKeyPEM(kb)
	if err != nil {
		return fail(1, "%s: %v", key, err)
	}
	csr, err := pki.Request(id, k)
	if err == nil {
		err = os.WriteFile(out, pki.CSRPEM(csr), 0o644)
	}
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintln(stdout, id)
	return 0
}
