package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/psavd/psavd/control/membership"
)

// ctl runs psavctl in-process: exit code, stdout, stderr.
func ctl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := ctl(args...)
	if code != 0 {
		t.Fatalf("psavctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func TestKeyGenerate(t *testing.T) {
	dir := t.TempDir()
	for _, alg := range []string{"ed25519", "ecdsa-p256"} {
		f := filepath.Join(dir, alg+".key")
		pub := strings.TrimSpace(mustCtl(t, "key", "generate", "-out", f, "-alg", alg))
		k, err := membership.ParsePublicKey(pub)
		if err != nil || !strings.HasPrefix(pub, alg+":") {
			t.Fatalf("%s: printed %q: %v", alg, pub, err)
		}
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: key file mode %v: %v", alg, st.Mode(), err)
		}
		b, _ := os.ReadFile(f)
		s, err := membership.ParseSignerPEM(b)
		if err != nil || !s.Public().Equal(k) {
			t.Fatalf("%s: the file's key is not the printed one: %v", alg, err)
		}
		if code, _, errs := ctl("key", "generate", "-out", f, "-alg", alg); code == 0 || !strings.Contains(errs, "exists") {
			t.Errorf("%s: overwrote an existing key (exit %d): %s", alg, code, errs)
		}
		if b2, _ := os.ReadFile(f); !bytes.Equal(b, b2) {
			t.Errorf("%s: key file changed", alg)
		}
	}
	if code, _, _ := ctl("key", "generate", "-out", filepath.Join(dir, "x"), "-alg", "rsa"); code != 2 {
		t.Error("-alg rsa accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("a file was written for a bad -alg")
	}
	// The default is Ed25519.
	if pub := mustCtl(t, "key", "generate", "-out", filepath.Join(dir, "d.key")); !strings.HasPrefix(pub, "ed25519:") {
		t.Errorf("default key %q", pub)
	}
}

func TestRecordNewEndorseShow(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	asPub := strings.TrimSpace(mustCtl(t, "key", "generate", "-out", p("as.key"), "-alg", "ecdsa-p256"))
	comPub := strings.TrimSpace(mustCtl(t, "key", "generate", "-out", p("community.key")))
	otherPub := strings.TrimSpace(mustCtl(t, "key", "generate", "-out", p("other.key")))
	out := mustCtl(t, "record", "new", "-kind", "join", "-asn", "65001", "-ascn", "0", "-version", "3",
		"-prefix", "203.0.113.0/24", "-prefix", "198.51.100.0/25", "-prefix", "2001:db8::/32",
		"-acs", "198.18.0.1:7443", "-acs", "[2001:db8::1]:7443", "-key", p("as.key"), "-out", p("as.rec"))
	if !strings.Contains(out, "AS65001 join version 3, hash ") {
		t.Errorf("record new printed %q", out)
	}
	// Signed, not endorsed: show says so; with a community key it fails.
	out = mustCtl(t, "record", "show", p("as.rec"))
	for _, want := range []string{"kind       join", "asn        65001", "version    3", "key        " + asPub,
		"prefixes   198.51.100.0/25 203.0.113.0/24 2001:db8::/32", "acs        198.18.0.1:7443 [2001:db8::1]:7443",
		"signature  valid", "endorsement missing"} {
		if !strings.Contains(out, want) {
			t.Errorf("record show lacks %q:\n%s", want, out)
		}
	}
	if code, _, _ := ctl("record", "show", p("as.rec"), "-community-key", comPub); code != 1 {
		t.Errorf("an unendorsed record passed with -community-key (exit %d)", code)
	}
	mustCtl(t, "record", "endorse", "-in", p("as.rec"), "-key", p("community.key"), "-out", p("as.endorsed.rec"))
	out = mustCtl(t, "record", "show", p("as.endorsed.rec"), "-community-key", otherPub, "-community-key", comPub)
	if !strings.Contains(out, "endorsement valid") || !strings.Contains(out, "by "+comPub+": valid") || !strings.Contains(out, "by "+otherPub+": invalid") {
		t.Errorf("record show of the endorsed record:\n%s", out)
	}
	if code, out, _ := ctl("record", "show", "-community-key", otherPub, p("as.endorsed.rec")); code != 1 || !strings.Contains(out, "endorsement invalid") {
		t.Errorf("endorsement by the wrong key: exit %d\n%s", code, out)
	}
	// The JSON form.
	var v recordView
	if err := json.Unmarshal([]byte(mustCtl(t, "record", "show", "-json", "-community-key", comPub, p("as.endorsed.rec"))), &v); err != nil {
		t.Fatal(err)
	}
	if v.ASN != 65001 || v.Signature != "valid" || v.Endorsement != "valid" || v.EndorsementKey != comPub || len(v.Prefixes) != 3 {
		t.Errorf("JSON: %+v", v)
	}
	// What an ACS does with it: the policy verifies it.
	b, _ := os.ReadFile(p("as.endorsed.rec"))
	r, err := membership.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	ck, _ := membership.ParsePublicKey(comPub)
	pol, _ := membership.NewPolicy(map[uint32][]membership.PublicKey{0: {ck}})
	if reason, err := pol.Verify(&r); err != nil {
		t.Fatalf("policy refuses the record: %v %v", reason, err)
	}
	// A corrupted AS signature: show fails, endorse refuses.
	bad := append([]byte(nil), b...)
	bad[len(bad)-2*(2+membership.SigSize)+5] ^= 1 // inside the AS signature
	os.WriteFile(p("bad.rec"), bad, 0o644)
	if code, out, _ := ctl("record", "show", p("bad.rec")); code != 1 || !strings.Contains(out, "signature  invalid") {
		t.Errorf("bad AS signature: exit %d\n%s", code, out)
	}
	if code, _, _ := ctl("record", "endorse", "-in", p("bad.rec"), "-key", p("community.key"), "-out", p("bad2.rec")); code == 0 {
		t.Error("endorsed a record whose AS signature is bad")
	}
	// Malformed: non-zero exit.
	os.WriteFile(p("junk.rec"), []byte("junk"), 0o644)
	if code, _, errs := ctl("record", "show", p("junk.rec")); code != 1 || !strings.Contains(errs, "malformed") {
		t.Errorf("junk: exit %d %s", code, errs)
	}
	// Exit records carry nothing; join needs prefixes and an ACS.
	mustCtl(t, "record", "new", "-kind", "exit", "-asn", "65001", "-version", "4", "-key", p("as.key"), "-out", p("exit.rec"))
	if code, _, _ := ctl("record", "new", "-kind", "join", "-asn", "65001", "-version", "1", "-key", p("as.key"), "-out", p("x.rec")); code == 0 {
		t.Error("a join without prefixes was written")
	}
	if code, _, _ := ctl("record", "new", "-asn", "65001", "-prefix", "198.51.100.1/24", "-acs", "198.18.0.1:7443", "-key", p("as.key"), "-out", p("x.rec")); code != 2 {
		t.Error("a prefix with host bits was accepted")
	}
}

// TestRecordFormat2 makes the records of docs/wire.md §3.2's format 2 with
// psavctl alone and hands them to a membership set as an ACS would: a key
// rotation signed by the old key, a root override that moves an AS to
// another community, and a more-specific let in by the covering member's
// consent. Each is refused without its proof.
func TestRecordFormat2(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	pub := func(name string) membership.PublicKey {
		k, err := membership.ParsePublicKey(strings.TrimSpace(mustCtl(t, "key", "generate", "-out", p(name))))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	root, comm7 := pub("root.key"), pub("comm7.key")
	for _, k := range []string{"a1.key", "a2.key", "b.key", "c.key"} {
		pub(k)
	}
	pol, err := membership.NewPolicy(map[uint32][]membership.PublicKey{0: {root}, 7: {comm7}})
	if err != nil {
		t.Fatal(err)
	}
	set := membership.NewSet(pol)
	// make writes, endorses (by community key ckey, and by authority akey
	// if given) and applies one record; it returns the set's verdict.
	make := func(name, ckey, akey string, args ...string) error {
		t.Helper()
		mustCtl(t, append([]string{"record", "new", "-out", p(name + ".signed")}, args...)...)
		mustCtl(t, "record", "endorse", "-in", p(name+".signed"), "-key", p(ckey), "-out", p(name))
		if akey != "" {
			mustCtl(t, "record", "endorse", "-authority", "-in", p(name), "-key", p(akey), "-out", p(name))
		}
		b, err := os.ReadFile(p(name))
		if err != nil {
			t.Fatal(err)
		}
		_, err = set.ApplyBytes(b)
		return err
	}
	mustApply := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustApply(make("a1.rec", "root.key", "", "-asn", "65001", "-version", "1", "-prefix", "10.1.0.0/16", "-acs", "192.0.2.1:7443", "-key", p("a1.key")))
	mustApply(make("b1.rec", "root.key", "", "-asn", "65002", "-version", "1", "-prefix", "10.2.0.0/16", "-acs", "192.0.2.2:7443", "-key", p("b.key")))

	// Key rotation: refused without the old key's hand-over, accepted with it.
	if err := make("a2-bare.rec", "root.key", "", "-kind", "update", "-asn", "65001", "-version", "2", "-prefix", "10.1.0.0/16", "-acs", "192.0.2.1:7443", "-key", p("a2.key")); membership.ReasonOf(err) == membership.ReasonNone {
		t.Fatal("a key change without the old key's signature was accepted")
	}
	mustApply(make("a2.rec", "root.key", "", "-kind", "update", "-asn", "65001", "-version", "2", "-prefix", "10.1.0.0/16", "-acs", "192.0.2.1:7443", "-key", p("a2.key"), "-rotate-from", p("a1.key")))
	if r, _ := set.Get(65001); !r.Key.Equal(mustKey(t, p("a2.key"))) {
		t.Fatal("rotation not in force")
	}
	if out := mustCtl(t, "record", "show", p("a2.rec")); !strings.Contains(out, "rotation   signed by the AS's previous key") {
		t.Errorf("record show of a rotation:\n%s", out)
	}

	// A move to community 7: refused with only community 7's endorsement,
	// accepted with the root's second endorsement.
	if err := make("a3-bare.rec", "comm7.key", "", "-kind", "update", "-asn", "65001", "-ascn", "7", "-version", "3", "-prefix", "10.1.0.0/16", "-acs", "192.0.2.1:7443", "-key", p("a2.key")); membership.ReasonOf(err) != membership.ReasonForeignCommunity {
		t.Fatalf("a move without the old community's endorsement: %v", err)
	}
	mustApply(make("a3.rec", "comm7.key", "root.key", "-kind", "update", "-asn", "65001", "-ascn", "7", "-version", "3", "-prefix", "10.1.0.0/16", "-acs", "192.0.2.1:7443", "-key", p("a2.key"), "-authority", "0"))
	if r, _ := set.Get(65001); r.ASCN != 7 {
		t.Fatalf("AS65001 in community %d", r.ASCN)
	}

	// A more-specific of AS65002's /16 for an AS of another community:
	// refused bare, accepted with AS65002's consent.
	if err := make("c-bare.rec", "comm7.key", "", "-asn", "65003", "-ascn", "7", "-version", "1", "-prefix", "10.2.3.0/25", "-acs", "192.0.2.3:7443", "-key", p("c.key")); membership.ReasonOf(err) != membership.ReasonMoreSpecific {
		t.Fatalf("a more-specific without a cover: %v", err)
	}
	mustCtl(t, "record", "cover", "-asn", "65003", "-prefix", "10.2.3.0/25", "-coverer", "65002", "-key", p("b.key"), "-out", p("cover"))
	if code, _, errs := ctl("record", "new", "-asn", "65004", "-version", "1", "-prefix", "10.2.3.0/25", "-acs", "192.0.2.4:7443", "-key", p("c.key"), "-cover", p("cover"), "-out", p("x.rec")); code == 0 || !strings.Contains(errs, "for AS65003") {
		t.Errorf("a consent for AS65003 used by AS65004: exit %d %s", code, errs)
	}
	mustApply(make("c.rec", "comm7.key", "", "-asn", "65003", "-ascn", "7", "-version", "1", "-prefix", "10.2.3.0/25", "-acs", "192.0.2.3:7443", "-key", p("c.key"), "-cover", p("cover")))
	if out := mustCtl(t, "record", "show", p("c.rec")); !strings.Contains(out, "cover      AS65002 10.2.3.0/25") {
		t.Errorf("record show of a cover:\n%s", out)
	}
}

func mustKey(t *testing.T, path string) membership.PublicKey {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := membership.ParseSignerPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return s.Public()
}
