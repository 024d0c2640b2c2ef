package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/psavd/psavd/control/pki"
)

// caInit is psavctl ca init: a self-signed ECDSA P-256 CA for a lab or a
// small alliance, its certificate (PEM) and its key (PKCS #8 PEM, mode
// 0600; neither file may exist). stdout: one line naming the CA.
func caInit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ca init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	outCert := fs.String("out-cert", "", "where to write the CA certificate (PEM; required)")
	outKey := fs.String("out-key", "", "where to write the CA key (PKCS #8 PEM, mode 0600; required)")
	name := fs.String("name", "psavd alliance CA", "the CA's common name")
	days := fs.Int("days", 3650, "validity in days")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *outCert == "" || *outKey == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "psavctl ca init: need -out-cert and -out-key (and no arguments)")
		return 2
	}
	if _, err := os.Stat(*outCert); err == nil {
		fmt.Fprintf(stderr, "psavctl ca init: %s exists; not overwriting it\n", *outCert)
		return 1
	}
	ca, certPEM, keyPEM, err := pki.NewCA(*name, *days)
	if err == nil {
		if err = writeNew(*outKey, keyPEM, 0o600); err == nil {
			if err = writeNew(*outCert, certPEM, 0o644); err != nil {
				os.Remove(*outKey)
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

// caSign is psavctl ca sign: a certificate for a CSR from cert request,
// for TLS server and client authentication, if the CSR's signature
// verifies and its only SAN is one well-formed psav role URI. -legacy
// issues today's psav:as<N> of the CSR's AS instead (and then also takes a
// legacy CSR): control/pair does not yet accept the role forms. stdout: one
// line, the URI, serial and expiry.
func caSign(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ca sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	caCert := fs.String("ca", "", "the CA certificate (PEM; required)")
	caKey := fs.String("ca-key", "", "the CA key (PKCS #8 PEM; required)")
	csr := fs.String("csr", "", "the request (PEM or DER; required)")
	out := fs.String("out", "", "where to write the certificate (PEM; required)")
	days := fs.Int("days", 365, "validity in days (at most the CA's)")
	legacy := fs.Bool("legacy", false, "issue the role-less psav:as<N> that today's psavd verifies")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	fail := func(code int, f string, a ...any) int {
		fmt.Fprintf(stderr, "psavctl ca sign: "+f+"\n", a...)
		return code
	}
	if *caCert == "" || *caKey == "" || *csr == "" || *out == "" || fs.NArg() != 0 {
		return fail(2, "need -ca, -ca-key, -csr and -out (and no arguments)")
	}
	var files [3][]byte
	for i, p := range []string{*caCert, *caKey, *csr} {
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
	der, id, err := ca.Sign(files[2], *days, *legacy)
	if err != nil {
		return fail(1, "%s: %v", *csr, err)
	}
	if err := os.WriteFile(*out, pki.CertPEM(der), 0o644); err != nil {
		return fail(1, "%v", err)
	}
	c, err := pki.ParseCertificatePEM(pki.CertPEM(der))
	if err != nil {
		return fail(1, "%v", err)
	}
	fmt.Fprintf(stdout, "%s: %s, serial %x, valid until %s\n", *out, id, c.SerialNumber, c.NotAfter.UTC().Format(time.RFC3339))
	return 0
}
