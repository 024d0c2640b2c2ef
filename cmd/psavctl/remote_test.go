package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/acs"
	"github.com/psavd/psavd/control/membership"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/pki"
	"github.com/psavd/psavd/internal/testpki"
)

// The remote forms against a real ACS on loopback over mutual TLS: status
// -acs and tables -acs with an operator certificate of the AS; each refused
// up front, with the role it needs, when given an ABR's certificate, and the single-dash and double-dash
// spellings the same.
func TestRemoteForms(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	ca, err := testpki.NewCA("psavctl test alliance")
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteFile(p("ca.pem")); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	acsCert, err := ca.IssueACS(65001, now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for name, issue := range map[string]func() error{
		"op": func() error {
			c, err := ca.IssueOp(65001, "noc", now.Add(-time.Hour), now.Add(time.Hour))
			if err == nil {
				err = testpki.WriteFiles(c, p("op.pem"), p("op.key"))
			}
			return err
		},
		"abr": func() error {
			c, err := ca.IssueABR(65001, "edge-1", now.Add(-time.Hour), now.Add(time.Hour))
			if err == nil {
				err = testpki.WriteFiles(c, p("abr.pem"), p("abr.key"))
			}
			return err
		},
	} {
		if err := issue(); err != nil {
			t.Fatalf("%s certificate: %v", name, err)
		}
	}
	comm, err := membership.GenerateSigner(membership.AlgEd25519)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := membership.NewPolicy(map[uint32][]membership.PublicKey{0: {comm.Public()}})
	if err != nil {
		t.Fatal(err)
	}
	node, err := acs.New(acs.Config{ASN: 65001, Listen: "127.0.0.1:0", MembershipPolicy: pol, MembershipDir: t.TempDir(),
		Identity: pair.Identity{ASN: 65001, Role: pki.RoleACS, Cert: acsCert, CA: ca.Pool()}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := node.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	addr := node.Addr().String()
	with := func(role string, args ...string) []string {
		return append(args, "-acs", addr, "-asn", "65001", "-cert", p(role+".pem"), "-key", p(role+".key"), "-ca", p("ca.pem"))
	}

	if out := mustCtl(t, with("op", "status")...); !strings.Contains(out, "ACS of AS65001") {
		t.Errorf("status -acs:\n%s", out)
	}
	if out := mustCtl(t, append(with("op", "status"), "--json")...); !strings.Contains(out, `"asn": 65001`) {
		t.Errorf("status -acs --json:\n%s", out)
	}
	if out := mustCtl(t, with("op", "tables")...); !strings.Contains(out, "tables of AS65001") {
		t.Errorf("tables -acs:\n%s", out)
	}
	if out := mustCtl(t, with("op", "tables", "-json")...); !strings.Contains(out, `"localAsn": 65001`) || strings.Contains(out, `"key":`) {
		t.Errorf("tables -acs -json:\n%s", out)
	}
	if code, _, errs := ctl(with("abr", "status")...); code != 1 || !strings.Contains(errs, "needs an op certificate") {
		t.Errorf("status -acs with an ABR certificate: exit %d: %s", code, errs)
	}
	if code, _, errs := ctl(with("abr", "tables")...); code != 1 || !strings.Contains(errs, "needs an op certificate") {
		t.Errorf("tables -acs with an ABR certificate: exit %d: %s", code, errs)
	}
}
