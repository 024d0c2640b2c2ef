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
