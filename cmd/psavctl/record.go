package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/psavd/psavd/control/membership"
)

func (a *app) recordCommand() *cobra.Command {
	return a.group(&cobra.Command{
		Use:   "record",
		Short: "membership records: make, endorse, show, submit",
		Long: `A membership record (docs/wire.md §3.2) is an AS's statement of its
prefixes and ACS addresses, signed with the AS's key and endorsed by its
community: record new writes one, record endorse adds the endorsement,
record show prints it and checks both signatures, record submit hands it
to the local node's ACS.`,
	}, a.recordNewCommand(), a.recordEndorseCommand(), a.recordCoverCommand(), a.recordShowCommand(), a.recordSubmitCommand())
}

// recordNewCommand is psavctl record new: a membership record (docs/wire.md
// §3.2) built from flags, canonicalised and signed with the AS's key,
// written in the canonical encoding that [acs] record reads. stdout: one
// line, the record's summary and hash.
func (a *app) recordNewCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "new -kind join|update|exit -asn N [-ascn C] -version V -prefix P ... -acs HOST:PORT ... -key ASKEY -out R",
		Short: "write a membership record signed by the AS's key",
		Long: `Writes a membership record built from the flags, signed with the AS's key
(-key, from key generate), in the encoding [acs] record reads, and prints
its summary and hash. A join or update names the AS's prefixes (-prefix,
repeated) and ACS addresses (-acs, repeated); an exit names neither. A
higher -version replaces the AS's older record.

Format 2 (docs/wire.md §3.2): -rotate-from OLDKEY hands the AS over from the
key held for it to -key (the old key signs the new one); -authority C asks
community C (the one the AS leaves, or the root 0) to endorse the record a
second time (record endorse -authority), needed to move the AS to another
community or, by the root, to replace its key without the old one; -cover
FILE (repeatable, from record cover) carries a covering member's consent
to a more-specific of its prefix.`,
	}
	var o recordNewOptions
	fs := c.Flags()
	fs.StringVar(&o.kind, "kind", "join", "record `KIND`: join, update or exit")
	fs.Uint64Var(&o.asn, "asn", 0, "the AS number `N` (required)")
	fs.Uint64Var(&o.ascn, "ascn", 0, "its community `C` (0: the top level, a flat alliance)")
	fs.Uint64Var(&o.version, "version", 1, "record `VERSION`, ≥ 1; a higher one replaces the AS's older record")
	fs.StringArrayVar(&o.prefixes, "prefix", nil, "a `PREFIX` the AS owns (repeatable)")
	fs.StringArrayVar(&o.acs, "acs", nil, "an ACS address `IP:PORT` of the AS (repeatable)")
	fs.StringVar(&o.key, "key", "", "the AS's private key `FILE` (PKCS #8 PEM, from key generate; required)")
	fs.StringVar(&o.out, "out", "", "where to write the record `FILE` (required)")
	fs.StringVar(&o.rotateFrom, "rotate-from", "", "the AS's old private key `FILE`: sign the hand-over to -key (a key rotation)")
	fs.Int64Var(&o.authority, "authority", -1, "ask community `C` to endorse the record a second time (a move, or a root override)")
	fs.StringArrayVar(&o.covers, "cover", nil, "a covering member's consent `FILE` from record cover (repeatable)")
	return a.leaf(c, noArgs, func(*cobra.Command, []string) int { return recordNew(&o, a.stdout, a.stderr) })
}

// recordNewOptions are record new's flags.
type recordNewOptions struct {
	kind, key, out     string
	asn, ascn, version uint64
	prefixes, acs      []string
	rotateFrom         string
	authority          int64 // -1: none
	covers             []string
}

func recordNew(o *recordNewOptions, stdout, stderr io.Writer) int {
	fail := func(code int, f string, a ...any) int {
		fmt.Fprintf(stderr, "psavctl record new: "+f+"\n", a...)
		return code
	}
	if o.asn == 0 || o.key == "" || o.out == "" {
		return fail(2, "need -asn, -key and -out")
	}
	if o.asn > 1<<32-1 || o.ascn > 1<<32-1 {
		return fail(2, "-asn and -ascn are 32-bit")
	}
	r := membership.Record{ASN: uint32(o.asn), ASCN: uint32(o.ascn), Version: o.version}
	switch o.kind {
	case "join":
		r.Kind = membership.KindJoin
	case "update":
		r.Kind = membership.KindUpdate
	case "exit":
		r.Kind = membership.KindExit
	default:
		return fail(2, "-kind %q: want join, update or exit", o.kind)
	}
	for _, p := range o.prefixes {
		pp, err := netip.ParsePrefix(p)
		if err != nil {
			return fail(2, "-prefix: %v", err)
		}
		if pp != pp.Masked() {
			return fail(2, "-prefix %s has host bits set (%s?)", pp, pp.Masked())
		}
		r.Prefixes = append(r.Prefixes, pp)
	}
	for _, a := range o.acs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return fail(2, "-acs: %v (want IP:PORT)", err)
		}
		r.ACS = append(r.ACS, ap)
	}
	s, err := loadSigner(o.key)
	if err != nil {
		return fail(1, "%v", err)
	}
	r.Key = s.Public()
	r.Canonicalize()
	// The format-2 proofs come before the AS signature, which covers them.
	if o.rotateFrom != "" {
		old, err := loadSigner(o.rotateFrom)
		if err == nil {
			err = r.SignRotation(old)
		}
		if err != nil {
			return fail(1, "-rotate-from: %v", err)
		}
	}
	if o.authority >= 0 {
		if o.authority > 1<<32-1 {
			return fail(2, "-authority is a 32-bit community number")
		}
		r.RequestAuthority(uint32(o.authority))
	}
	for _, f := range o.covers {
		c, asn, err := readCover(f)
		if err != nil {
			return fail(1, "-cover: %v", err)
		}
		if asn != r.ASN {
			return fail(1, "-cover %s: the consent is for AS%d, not AS%d", f, asn, r.ASN)
		}
		r.Covers = append(r.Covers, c)
	}
	r.Canonicalize()
	if err := r.Sign(s); err != nil {
		return fail(1, "%v", err)
	}
	return writeRecord(&r, o.out, "record new", stdout, stderr)
}

// coverMagic starts the one line of a cover file (record cover).
const coverMagic = "psavd-cover-v1"

// recordCoverCommand is psavctl record cover: a covering member's consent
// to another AS announcing a more-specific of its prefix.
func (a *app) recordCoverCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "cover -asn N -prefix P -coverer M -key MKEY -out C",
		Short: "consent, as the member holding a covering prefix, to AS N announcing P",
		Long: `Writes the consent of member -coverer (signed with its key, -key) to AS -asn
announcing -prefix, a more-specific of one of the coverer's prefixes
(docs/wire.md §3.2). The file goes to AS N's operator, whose record new
-cover takes it.`,
	}
	var asn, coverer uint64
	var prefix, key, out string
	fs := c.Flags()
	fs.Uint64Var(&asn, "asn", 0, "the AS `N` that will announce the prefix (required)")
	fs.StringVar(&prefix, "prefix", "", "the more-specific `PREFIX` (required)")
	fs.Uint64Var(&coverer, "coverer", 0, "the member `M` holding the covering prefix (required)")
	fs.StringVar(&key, "key", "", "the coverer's private key `FILE` (required)")
	fs.StringVar(&out, "out", "", "where to write the consent `FILE` (required)")
	return a.leaf(c, noArgs, func(*cobra.Command, []string) int {
		fail := func(code int, f string, v ...any) int {
			fmt.Fprintf(a.stderr, "psavctl record cover: "+f+"\n", v...)
			return code
		}
		if asn == 0 || coverer == 0 || prefix == "" || key == "" || out == "" {
			return fail(2, "need -asn, -prefix, -coverer, -key and -out")
		}
		if asn > 1<<32-1 || coverer > 1<<32-1 {
			return fail(2, "-asn and -coverer are 32-bit")
		}
		p, err := netip.ParsePrefix(prefix)
		if err != nil || p != p.Masked() {
			return fail(2, "-prefix %q: want a prefix without host bits", prefix)
		}
		s, err := loadSigner(key)
		if err != nil {
			return fail(1, "%v", err)
		}
		var r membership.Record
		r.ASN = uint32(asn)
		if err := r.AddCover(uint32(coverer), p, s); err != nil {
			return fail(1, "%v", err)
		}
		cv := r.Covers[0]
		line := fmt.Sprintf("%s %d %d %s %s\n", coverMagic, r.ASN, cv.ASN, cv.Prefix, base64.StdEncoding.EncodeToString(cv.Signature))
		if err := os.WriteFile(out, []byte(line), 0o644); err != nil {
			return fail(1, "%v", err)
		}
		fmt.Fprintf(a.stdout, "%s: AS%d consents to AS%d announcing %s\n", out, cv.ASN, r.ASN, cv.Prefix)
		return 0
	})
}

// readCover reads a record cover file: the consent and the AS it is for.
func readCover(path string) (membership.Cover, uint32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return membership.Cover{}, 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 5 || f[0] != coverMagic {
		return membership.Cover{}, 0, fmt.Errorf("%s: not a cover file (record cover writes them)", path)
	}
	asn, err1 := strconv.ParseUint(f[1], 10, 32)
	coverer, err2 := strconv.ParseUint(f[2], 10, 32)
	p, err3 := netip.ParsePrefix(f[3])
	sig, err4 := base64.StdEncoding.DecodeString(f[4])
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return membership.Cover{}, 0, fmt.Errorf("%s: %w", path, err)
	}
	return membership.Cover{ASN: uint32(coverer), Prefix: p, Signature: sig}, uint32(asn), nil
}

// recordEndorseCommand is psavctl record endorse: the community's
// endorsement added to a signed record.
func (a *app) recordEndorseCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "endorse -in R -key COMMUNITYKEY -out R2",
		Short: "add the community's endorsement to an AS-signed record",
		Long: `Adds the community's endorsement (-key, the community's private key) to a
record whose AS signature verifies, and writes the result to -out. A record
whose AS signature does not verify is not endorsed. With -authority, -key is
the key of the community the record asked (record new -authority) and the
record must already carry its community's endorsement.`,
	}
	var in, key, out string
	var authority bool
	c.Flags().BoolVar(&authority, "authority", false, "add the authority's second endorsement (the record asked for it) instead of the community's")
	c.Flags().StringVar(&in, "in", "", "the AS-signed record `FILE` (required)")
	c.Flags().StringVar(&key, "key", "", "the community's private key `FILE` (PKCS #8 PEM; required)")
	c.Flags().StringVar(&out, "out", "", "where to write the endorsed record `FILE` (required)")
	return a.leaf(c, noArgs, func(*cobra.Command, []string) int { return recordEndorse(in, key, out, authority, a.stdout, a.stderr) })
}

func recordEndorse(in, key, out string, authority bool, stdout, stderr io.Writer) int {
	if in == "" || key == "" || out == "" {
		fmt.Fprintln(stderr, "psavctl record endorse: need -in, -key and -out")
		return 2
	}
	r, err := readRecord(in)
	if err != nil {
		fmt.Fprintf(stderr, "psavctl record endorse: %v\n", err)
		return 1
	}
	// Endorsing a record whose AS signature does not verify would vouch
	// for a statement the AS never made.
	if !asSignatureValid(&r) {
		fmt.Fprintf(stderr, "psavctl record endorse: %s: the AS signature does not verify with the record's key; not endorsing\n", in)
		return 1
	}
	s, err := loadSigner(key)
	switch {
	case err != nil:
	case authority:
		err = r.EndorseAuthority(s)
	default:
		err = r.Endorse(s)
	}
	if err != nil {
		fmt.Fprintf(stderr, "psavctl record endorse: %v\n", err)
		return 1
	}
	return writeRecord(&r, out, "record endorse", stdout, stderr)
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
	// Format 2: a key hand-over, a second endorsement asked of community
	// Authority (and whether it is there), covering members' consents.
	Rotation     bool     `json:"rotation,omitempty"`
	Authority    *uint32  `json:"authority,omitempty"`
	AuthoritySig string   `json:"authoritySignature,omitempty"` // "present" or "missing"
	Covers       []string `json:"covers,omitempty"`             // "AS<M> <prefix>"
}

// recordShow is psavctl record show R [-json] [-community-key K …]: every
// field and whether each signature verifies. The AS signature is checked
// against the record's own key; the endorsement against each -community-key
// given (a record names no endorsing key: its community's keys are
// configuration). Exit 1 if the record is malformed, its AS signature is
// missing or invalid, or community keys were given and none verifies the
// endorsement; 0 otherwise.
func (a *app) recordShowCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "show R [-json] [-community-key ed25519:...]",
		Short: "print a record's fields and whether each signature verifies",
		Long: `Prints every field of the record R and whether each signature verifies:
the AS signature against the record's own key, the endorsement against each
-community-key given (a record names no endorsing key: its community's keys
are configuration). Exit status 1 if the record is malformed, its AS
signature is missing or invalid, or community keys were given and none
verifies the endorsement.`,
	}
	var asJSON bool
	var ckeys []string
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringArrayVar(&ckeys, "community-key", nil, "a community `KEY` ed25519:… / ecdsa-p256:… to check the endorsement against (repeatable)")
	return a.leaf(c, exactArgs(1, "one record file"), func(_ *cobra.Command, args []string) int {
		return recordShow(args[0], asJSON, ckeys, a.stdout, a.stderr)
	})
}

func recordShow(file string, asJSON bool, ckeys []string, stdout, stderr io.Writer) int {
	var keys []membership.PublicKey
	for _, k := range ckeys {
		pk, err := membership.ParsePublicKey(strings.TrimSpace(k))
		if err != nil {
			fmt.Fprintf(stderr, "psavctl record show: -community-key: %v\n", err)
			return 2
		}
		keys = append(keys, pk)
	}
	r, err := readRecord(file)
	if err != nil {
		fmt.Fprintf(stderr, "psavctl record show: malformed record: %v\n", err)
		return 1
	}
	h, _ := r.Hash()
	v := recordView{File: file, Kind: r.Kind.String(), ASN: r.ASN, ASCN: r.ASCN, Version: r.Version,
		Key: r.Key.String(), Hash: hex.EncodeToString(h[:]), Prefixes: []string{}, ACS: []string{}}
	for _, p := range r.Prefixes {
		v.Prefixes = append(v.Prefixes, p.String())
	}
	for _, a := range r.ACS {
		v.ACS = append(v.ACS, a.String())
	}
	v.Rotation = len(r.Rotation) != 0
	if r.HasAuthority {
		a := r.AuthorityASCN
		v.Authority, v.AuthoritySig = &a, "missing"
		if len(r.AuthoritySig) != 0 {
			v.AuthoritySig = "present"
		}
	}
	for _, c := range r.Covers {
		v.Covers = append(v.Covers, fmt.Sprintf("AS%d %s", c.ASN, c.Prefix))
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
	if asJSON {
		b, _ := json.MarshalIndent(v, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintf(stdout, "record     %s\nkind       %s\nasn        %d\nascn       %d\nversion    %d\nkey        %s\n",
			v.File, v.Kind, v.ASN, v.ASCN, v.Version, v.Key)
		fmt.Fprintf(stdout, "prefixes   %s\nacs        %s\nhash       %s\n", strings.Join(v.Prefixes, " "), strings.Join(v.ACS, " "), v.Hash)
		fmt.Fprintf(stdout, "signature  %s (AS signature, by the record's key)\n", v.Signature)
		fmt.Fprintf(stdout, "endorsement %s\n", v.Endorsement)
		if v.Rotation {
			fmt.Fprintf(stdout, "rotation   signed by the AS's previous key\n")
		}
		if v.Authority != nil {
			fmt.Fprintf(stdout, "authority  community %d, second endorsement %s\n", *v.Authority, v.AuthoritySig)
		}
		for _, c := range v.Covers {
			fmt.Fprintf(stdout, "cover      %s\n", c)
		}
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
