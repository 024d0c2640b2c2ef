package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/psavd/psavd/control/pki"
)

// certRequest is psavctl cert request: a PKCS #10 CSR (PEM) whose only SAN
// is the identity's URI of docs/wire.md §3.1 — psav:as<N>:acs,
// psav:as<N>:abr:<name> or psav:as<N>:op:<name> — for a key from key
// generate (ecdsa-p256 or ed25519). With -legacy it names today's role-less
// psav:as<N> instead (what control/pair verifies); ca sign -legacy also
// turns a role CSR into such a certificate. stdout: one line, the URI.
func certRequest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cert request", flag.ContinueOnError)
	fs.SetOutput(stderr)
	role := fs.String("role", "acs", "acs, abr or op")
	asn := fs.Uint64("asn", 0, "the AS (required)")
	name := fs.String("name", "", "the ABR's or operator's name, 1–63 of [a-z0-9-] (not for acs)")
	key := fs.String("key", "", "the private key (PKCS #8 PEM, from key generate; required)")
	out := fs.String("out", "", "where to write the CSR (PEM; required)")
	legacy := fs.Bool("legacy", false, "request the role-less psav:as<N> of today's control plane")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	fail := func(code int, f string, a ...any) int {
		fmt.Fprintf(stderr, "psavctl cert request: "+f+"\n", a...)
		return code
	}
	if *asn == 0 || *asn > 1<<32-1 || *key == "" || *out == "" || fs.NArg() != 0 {
		return fail(2, "need -asn (1…4294967295), -key and -out (and no arguments)")
	}
	id := pki.Legacy(uint32(*asn))
	if !*legacy {
		r, err := pki.ParseRole(*role)
		if err != nil {
			return fail(2, "-role: %v", err)
		}
		id = pki.Identity{ASN: uint32(*asn), Role: r, Name: *name}
	} else if *name != "" {
		return fail(2, "-legacy names the AS only: no -name")
	}
	if err := id.Validate(); err != nil {
		return fail(2, "%v", err)
	}
	kb, err := os.ReadFile(*key)
	if err != nil {
		return fail(1, "%v", err)
	}
	k, err := pki.ParseKeyPEM(kb)
	if err != nil {
		return fail(1, "%s: %v", *key, err)
	}
	csr, err := pki.Request(id, k)
	if err == nil {
		err = os.WriteFile(*out, pki.CSRPEM(csr), 0o644)
	}
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintln(stdout, id)
	return 0
}
