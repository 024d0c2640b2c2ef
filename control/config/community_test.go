package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/psavd/psavd/control/membership"
)

// acsOnly is an ACS-only node of AS 65002 with the given [[acs.community]]
// sections; the files it names exist.
func acsOnly(t *testing.T, communities string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"acs.pem", "acs.key", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf(`
[psav]
asn = 65002
[acs]
listen = "127.0.0.1:7443"
cert = %q
key = %q
ca = %q
membership_dir = %q
%s`, filepath.Join(dir, "acs.pem"), filepath.Join(dir, "acs.key"), filepath.Join(dir, "ca.pem"), dir, communities)
}

const key0 = `keys = ["ed25519:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="]`

func TestACSCommunityTree(t *testing.T) {
	// The PSAV draft's Figure 1: community 1 under the root, AS 65002 its
	// border, AS 65003 the parent peer.
	good := acsOnly(t, "[[acs.community]]\nascn = 0\n"+key0+"\n[[acs.community]]\nascn = 1\nparent = 0\nborder = 65002\nparent_peer = 65003\n"+key0+"\n")
	c, err := Parse("tree.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if cm := c.ACS.Communities[0]; len(c.ACS.Communities) != 1 || cm.ASCN != 1 || cm.Border != 65002 || cm.ParentPeer != 65003 || len(c.ACS.Anchors[0]) != 1 || len(c.ACS.Anchors[1]) != 1 {
		t.Fatalf("%+v", cm)
	}
	for _, bad := range []struct{ name, communities, key, reason string }{
		{"root with parent", "[[acs.community]]\nascn = 0\nborder = 1\nparent_peer = 2\n" + key0, "acs.community[0].ascn", "root"},
		{"no border", "[[acs.community]]\nascn = 0\n" + key0 + "\n[[acs.community]]\nascn = 1\nparent_peer = 65003\n" + key0, "acs.community[1].border", "missing"},
		{"no parent peer", "[[acs.community]]\nascn = 0\n" + key0 + "\n[[acs.community]]\nascn = 1\nborder = 65002\n" + key0, "acs.community[1].parent_peer", "missing"},
		{"parent unknown", "[[acs.community]]\nascn = 1\nparent = 9\nborder = 65002\nparent_peer = 65003\n" + key0, "acs.community[0].parent", "not configured"},
		{"twice", "[[acs.community]]\nascn = 0\n" + key0 + "\n[[acs.community]]\nascn = 0\n" + key0, "acs.community[1].ascn", "twice"},
		{"cycle", "[[acs.community]]\nascn = 1\nparent = 2\nborder = 1\nparent_peer = 2\n" + key0 + "\n[[acs.community]]\nascn = 2\nparent = 1\nborder = 3\nparent_peer = 4\n" + key0, "acs.community", "cycle"},
		{"same AS", "[[acs.community]]\nascn = 0\n" + key0 + "\n[[acs.community]]\nascn = 1\nborder = 5\nparent_peer = 5\n" + key0, "acs.community", "same AS"},
	} {
		_, err := Parse("tree.toml", []byte(acsOnly(t, bad.communities)))
		var ps Problems
		if !errors.As(err, &ps) {
			t.Fatalf("%s: want Problems, got %v", bad.name, err)
		}
		found := false
		for _, p := range ps {
			if p.File == "tree.toml" && strings.HasPrefix(p.Key, bad.key) && strings.Contains(p.String(), bad.reason) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no problem %q / %q in:\n%v", bad.name, bad.key, bad.reason, err)
		}
	}
}

// TestACSCommunityMembers: members pins ASes to their community; an AS
// listed twice, or ASN 0, is refused with file and key.
func TestACSCommunityMembers(t *testing.T) {
	c, err := Parse("m.toml", []byte(acsOnly(t, "[[acs.community]]\nascn = 0\n"+key0+"\nmembers = [65001, 65002]\n[[acs.community]]\nascn = 1\nparent = 0\nborder = 65003\nparent_peer = 65002\nmembers = [65003]\n"+key0+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[uint32]uint32{65001: 0, 65002: 0, 65003: 1}; fmt.Sprint(c.ACS.Members) != fmt.Sprint(want) {
		t.Fatalf("members %v", c.ACS.Members)
	}
	for _, bad := range []struct{ communities, key, reason string }{
		{"[[acs.community]]\nascn = 0\n" + key0 + "\nmembers = [65001, 0]\n", "acs.community[0].members[1]", "reserved"},
		{"[[acs.community]]\nascn = 0\n" + key0 + "\nmembers = [65001]\n[[acs.community]]\nascn = 1\nparent = 0\nborder = 65003\nparent_peer = 65002\nmembers = [65001]\n" + key0 + "\n", "acs.community[1].members[0]", "one community"},
	} {
		_, err := Parse("m.toml", []byte(acsOnly(t, bad.communities)))
		var ps Problems
		if !errors.As(err, &ps) {
			t.Fatalf("%s: want Problems, got %v", bad.key, err)
		}
		found := false
		for _, p := range ps {
			if p.File == "m.toml" && p.Key == bad.key && strings.Contains(p.String(), bad.reason) {
				found = true
			}
		}
		if !found {
			t.Errorf("no problem %s / %s in:\n%v", bad.key, bad.reason, err)
		}
	}
}

// TestACSCommunityQuotas: max_members and max_prefixes of [[acs.community]]
// become the community's membership.Quota; absent keys take the defaults;
// a written value outside 1 … the bound is refused with file and key.
func TestACSCommunityQuotas(t *testing.T) {
	c, err := Parse("q.toml", []byte(acsOnly(t, "[[acs.community]]\nascn = 0\n"+key0+"\n[[acs.community]]\nascn = 1\nparent = 0\nborder = 65002\nparent_peer = 65003\nmax_members = 10\nmax_prefixes = 200\n"+key0+"\n")))
	if err != nil {
		t.Fatal(err)
	}
	if q := c.ACS.Quotas[1]; q != (membership.Quota{MaxMembers: 10, MaxPrefixes: 200}) {
		t.Fatalf("community 1 quota %+v", q)
	}
	if q := c.ACS.Quotas[0]; q != membership.DefaultQuota {
		t.Fatalf("community 0 quota %+v", q)
	}
	for _, bad := range []struct{ line, key string }{
		{"max_members = 0", "acs.community[0].max_members"},
		{"max_members = -1", "acs.community[0].max_members"},
		{fmt.Sprintf("max_members = %d", MaxCommunityMembers+1), "acs.community[0].max_members"},
		{"max_prefixes = 0", "acs.community[0].max_prefixes"},
		{fmt.Sprintf("max_prefixes = %d", MaxCommunityPrefixes+1), "acs.community[0].max_prefixes"},
	} {
		_, err := Parse("q.toml", []byte(acsOnly(t, "[[acs.community]]\nascn = 0\n"+key0+"\n"+bad.line+"\n")))
		var ps Problems
		if !errors.As(err, &ps) {
			t.Fatalf("%s: want Problems, got %v", bad.line, err)
		}
		found := false
		for _, p := range ps {
			if p.File == "q.toml" && p.Key == bad.key && strings.Contains(p.String(), "must be 1") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no problem at %s in:\n%v", bad.line, bad.key, err)
		}
	}
}
