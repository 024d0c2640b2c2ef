package main

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/psavd/psavd/control/membership"
)

// recordNew is psavctl record new: a membership record (docs/wire.md §3.2)
// built from flags, canonicalised and signed with the AS's key, written in
// the canonical encoding that [acs] record reads. stdout: one line, the
// record's summary and hash.
func recordNew(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("record new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kind := fs.String("kind", "join", "join, update or exit")
	asn := fs.Uint64("asn", 0, "the AS (required)")
	ascn := fs.Uint64("ascn", 0, "its community (0: the top level, a flat alliance)")
	version := fs.Uint64("version", 1, "record version, ≥ 1; a higher one replaces the AS's older record")
	var prefixes, acsAddrs listFlag
	fs.Var(&prefixes, "prefix", "a prefix the AS owns (repeatable)")
	fs.Var(&acsAddrs, "acs", "an ACS address HOST:PORT of the AS (repeatable)")
	key := fs.String("key", "", "the AS's private key (PKCS #8 PEM, from key generate; required)")
	out := fs.String("out", "", "where to write the record (required)")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	fail := func(code int, f string, a ...any) int {
		fmt.Fprintf(stderr, "psavctl record new: "+f+"\n", a...)
		return code
	}
	if *asn == 0 || *key == "" || *out == "" || fs.NArg() != 0 {
		return fail(2, "need -asn, -key and -out (and no arguments)")
	}
	if *asn > 1<<32-1 || *ascn > 1<<32-1 {
		return fail(2, "-asn and -ascn are 32-bit")
	}
	r := membership.Record{ASN: uint32(*asn), ASCN: uint32(*ascn), Version: *version}
	switch *kind {
	case "join":
		r.Kind = membership.KindJoin
	case "update":
		r.Kind = membership.KindUpdate
	case "exit":
		r.Kind = membership.KindExit
	default:
		return fail(2, "-kind %q: want join, update or exit", *kind)
	}
	for _, p := range prefixes {
		pp, err := netip.ParsePrefix(p)
		if err != nil {
			return fail(2, "-prefix: %v", err)
		}
		if pp != pp.Masked() {
			return fail(2, "-prefix %s has host bits set (%s?)", pp, pp.Masked())
		}
		r.Prefixes = append(r.Prefixes, pp)
	}
	for _, a := range acsAddrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return fail(2, "-acs: %v (want IP:PORT)", err)
		}
		r.ACS = append(r.ACS, ap)
	}
	s, err := loadSigner(*key)
	if err != nil {
		return fail(1, "%v", err)
	}
	r.Key = s.Public()
	r.Canonicalize()
	if err := r.Sign(s); err != nil {
		return fail(1, "%v", err)
	}
	return writeRecord(&r, *out, "record new", stdout, stderr)
}

// recordEndorse is psavctl record endorse: the community's endorsement
// added to a signed record.
func recordEndorse(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("record endorse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "the AS-signed record (required)")
	key := fs.String("key", "", "the community's private key (PKCS #8 PEM; required)")
	out := fs.String("out", "", "where to write the endorsed record (required)")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *in == "" || *key == "" || *out == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "psavctl record endorse: need -in, -key and -out (and no arguments)")
		return 2
	}
	r, err := readRecord(*in)
	if err != nil {
		fmt.Fprintf(stderr, "psavctl record endorse: %v\n", err)
		return 1
	}
	// Endorsing a record whose AS signature does not verify would vouch
	// for a statement the AS never made.
	if !asSignatureValid(&r) {
		fmt.Fprintf(stderr, "psavctl record endorse: %s: the AS signature does not verify with the record's key; not endorsing\n", *in)
		return 1
	}
	s, err := loadSigner(*key)
	if err == nil {
		err = r.Endorse(s)
	}
	if err != nil {
		fmt.Fprintf(stderr, "psavctl record endorse: %v\n", err)
		return 1
	}
	return writeRecord(&r, *out, "record endorse", stdout, stderr)
}

func writeRecord(r *membership.Record, path, name string, stdout, stderr io.Writer) int {
	b, err := r.Encode()
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		fmt.Fprintf(stderr, "psavctl %s: %v\n", name, err)
		return 1
	}
	h, _ := r.Hash()
	fmt.Fprintf(stdout, "%s: AS%d %s version %d, hash %s\n", path, r.ASN, r.Kind, r.Version, hex.EncodeToString(h[:]))
	return 0
}

func readRecord(path string) (membership.Record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return membership.Record{}, err
	}
	r, err := membership.Decode(b)
	if err != nil {
		return membership.Record{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

func asSignatureValid(r *membership.Record) bool {
	msg, err := r.SignedBytes()
	return err == nil && len(r.Signature) != 0 && r.Key.Verify(msg, r.Signature)
}

// recordView is record show -json.
type recordView struct {
	File           string            `json:"file"`
	Kind           string            `json:"kind"`
	ASN            uint32            `json:"asn"`
	ASCN           uint32            `json:"ascn"`
	Version        uint64            `json:"version"`
	Key            string            `json:"key"`
	Prefixes       []string          `json:"prefixes"`
	ACS            []string          `json:"acs"`
	Hash           string            `json:"hash"`
	Signature      string            `json:"signature"` // "valid", "invalid" or "missing"
	Endorsement    string            `json:"endorsement"`
	EndorsedBy     map[string]string `json:"endorsedBy,omitempty"` // community key → "valid" or "invalid"
	EndorsementKey string            `json:"endorsementKey,omitempty"`
}

// recordShow is psavctl record show R [-json] [-community-key K …]: every
// field and whether each signature verifies. The AS signature is checked
// against the record's own key; the endorsement against each -community-key
// given (a record names no endorsing key: its community's keys are
// configuration). Exit 1 if the record is malformed, its AS signature is
// missing or invalid, or community keys were given and none verifies the
// endorsement; 0 otherwise.
func recordShow(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("record show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	var ckeys listFlag
	fs.Var(&ckeys, "community-key", "a community key ed25519:… / ecdsa-p256:… to check the endorsement against (repeatable)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagExit(err)
	}
	if len(pos) != 1 {
		fmt.Fprintln(stderr, "psavctl record show: need one record file")
		return 2
	}
	var keys []membership.PublicKey
	for _, k := range ckeys {
		pk, err := membership.ParsePublicKey(strings.TrimSpace(k))
		if err != nil {
			fmt.Fprintf(stderr, "psavctl record show: -community-key: %v\n", err)
			return 2
		}
		keys = append(keys, pk)
	}
	r, err := readRecord(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "psavctl record show: malformed record: %v\n", err)
		return 1
	}
	h, _ := r.Hash()
	v := recordView{File: pos[0], Kind: r.Kind.String(), ASN: r.ASN, ASCN: r.ASCN, Version: r.Version,
		Key: r.Key.String(), Hash: hex.EncodeToString(h[:]), Prefixes: []string{}, ACS: []string{}}
	for _, p := range r.Prefixes {
		v.Prefixes = append(v.Prefixes, p.String())
	}
	for _, a := range r.ACS {
		v.ACS = append(v.ACS, a.String())
	}
	ok := true
	switch {
	case len(r.Signature) == 0:
		v.Signature, ok = "missing", false
	case asSignatureValid(&r):
		v.Signature = "valid"
	default:
		v.Signature, ok = "invalid", false
	}
	switch {
	case len(r.Endorsement) == 0:
		v.Endorsement = "missing"
		if len(keys) > 0 {
			ok = false
		}
	case len(keys) == 0:
		v.Endorsement = "present, not checked (give -community-key)"
	default:
		msg, _ := r.EndorsedBytes()
		v.EndorsedBy = map[string]string{}
		v.Endorsement = "invalid"
		for _, k := range keys {
			if k.Verify(msg, r.Endorsement) {
				v.EndorsedBy[k.String()] = "valid"
				if v.EndorsementKey == "" {
					v.Endorsement, v.EndorsementKey = "valid", k.String()
				}
			} else {
				v.EndorsedBy[k.String()] = "invalid"
			}
		}
		if v.Endorsement != "valid" {
			ok = false
		}
	}
	if *asJSON {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintf(stdout, "record     %s\nkind       %s\nasn        %d\nascn       %d\nversion    %d\nkey        %s\n",
			v.File, v.Kind, v.ASN, v.ASCN, v.Version, v.Key)
		fmt.Fprintf(stdout, "prefixes   %s\nacs        %s\nhash       %s\n", strings.Join(v.Prefixes, " "), strings.Join(v.ACS, " "), v.Hash)
		fmt.Fprintf(stdout, "signature  %s (AS signature, by the record's key)\n", v.Signature)
		fmt.Fprintf(stdout, "endorsement %s\n", v.Endorsement)
		if v.EndorsedBy != nil {
			for _, k := range keys {
				fmt.Fprintf(stdout, "  by %s: %s\n", k, v.EndorsedBy[k.String()])
			}
		}
	}
	if !ok {
		return 1
	}
	return 0
}
