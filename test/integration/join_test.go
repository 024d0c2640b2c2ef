package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/psavd/psavd/control/mgmtpb"
	"github.com/psavd/psavd/deploy/lab"
	"github.com/psavd/psavd/internal/netlab"
	"google.golang.org/protobuf/encoding/protojson"
)

// joinDoc is the walkthrough these tests execute: its ```sh blocks are run
// as they stand, its ```console lines "$ psavd …" and "$ psavctl status …"
// inside the lab's namespaces (docs/join.md says so too), so the document
// cannot drift from what works.
type joinDoc struct {
	sh      []string // the ```sh blocks, in order
	console []string // the "$ " lines of the ```console blocks, without "$ "
}

func readJoinDoc(t *testing.T) joinDoc {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "docs", "join.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var d joinDoc
	var fence string
	var block strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case fence == "" && strings.HasPrefix(line, "```"):
			fence = strings.TrimPrefix(line, "```")
			block.Reset()
		case fence != "" && line == "```":
			if fence == "sh" {
				d.sh = append(d.sh, block.String())
			}
			fence = ""
		case fence == "sh":
			block.WriteString(line + "\n")
		case fence == "console" && strings.HasPrefix(line, "$ "):
			d.console = append(d.console, strings.TrimPrefix(line, "$ "))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(d.sh) < 5 || fence != "" {
		t.Fatalf("docs/join.md: %d sh blocks, unclosed fence %q", len(d.sh), fence)
	}
	return d
}

// consoleLines are the console lines that start with prefix.
func (d joinDoc) consoleLines(prefix string) []string {
	var out []string
	for _, l := range d.console {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

// runJoinShell runs every sh block of the walkthrough in dir, one bash each,
// with the built binaries first in PATH.
func runJoinShell(t *testing.T, d joinDoc, dir string) {
	t.Helper()
	binDir := filepath.Dir(psavdBinary(t))
	for i, b := range d.sh {
		cmd := exec.Command("bash", "-euo", "pipefail", "-c", b)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("docs/join.md sh block %d failed: %v\n%s\n--- output:\n%s", i+1, err, b, out)
		}
		t.Logf("block %d:\n%s--- output:\n%s", i+1, b, out)
	}
}

// TestJoinDocCommands runs the walkthrough's commands without a lab (no root
// needed): every file it promises exists, the records verify against the
// community key, and the configurations pass psavd check (in the block).
func TestJoinDocCommands(t *testing.T) {
	d := readJoinDoc(t)
	dir := t.TempDir()
	runJoinShell(t, d, dir)
	ctl := psavctlBinary(t)
	pub, err := os.ReadFile(filepath.Join(dir, "community", "community.pub"))
	if err != nil {
		t.Fatal(err)
	}
	for _, asn := range []string{"65001", "65002"} {
		for _, f := range []string{"acs.pem", "acs.key", "noc.pem", "noc.key", "as.key", "record.rec", "engine.toml"} {
			if _, err := os.Stat(filepath.Join(dir, "as"+asn, f)); err != nil {
				t.Errorf("the walkthrough made no %s: %v", f, err)
			}
		}
		out, err := exec.Command(ctl, "record", "show", "-community-key", strings.TrimSpace(string(pub)), filepath.Join(dir, "as"+asn, "record.rec")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "asn        "+asn) || !strings.Contains(string(out), "endorsement valid") {
			t.Errorf("record of AS%s: %v\n%s", asn, err, out)
		}
		out, err = exec.Command("openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", filepath.Join(dir, "as"+asn, "acs.pem")).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "URI:psav:as"+asn+":acs\n") {
			t.Errorf("AS%s's ACS certificate: %s", asn, out)
		}
	}
	if n := len(d.consoleLines("sudo psavd -config ")); n != 2 {
		t.Errorf("docs/join.md starts psavd %d times, want 2", n)
	}
	if n := len(d.consoleLines("psavctl status ")); n != 2 {
		t.Errorf("docs/join.md runs psavctl status %d times, want 2", n)
	}
}

// TestJoinTwoASes is docs/join.md end to end in the lab of
// TestNegotiatedKeysEndToEnd: the walkthrough's files, its two psavd started
// with its command lines in AS 65001's and AS 65002's namespaces (h1 —
// [AS 65001] — [AS 65002] — h2 through AF_XDP, a management link between
// the ACS), and its checks: the peers keyed, the same membership digest on
// both sides (psavctl status, as the walkthrough runs it), and traffic
// tagged at AS 65001 and validated at AS 65002.
func TestJoinTwoASes(t *testing.T) {
	skipUnlessLab(t)
	d := readJoinDoc(t)
	dir := t.TempDir()
	runJoinShell(t, d, dir)
	bin := psavdBinary(t)

	topo, must := newTopology(t)
	ns := func(name string) string {
		n, err := topo.NS(name)
		must(err)
		return n
	}
	h1, as1, as2, h2 := ns("jh1"), ns("jas1"), ns("jas2"), ns("jh2")
	nsOf := map[string]string{"65001": as1, "65002": as2}
	must(topo.Veth(h1, "eth0", "", as1, "eth1", ""))
	must(topo.Veth(as1, "eth2", "", as2, "eth2", ""))
	must(topo.Veth(as2, "eth1", "", h2, "eth0", ""))
	must(topo.Veth(as1, "mgmt0", "", as2, "mgmt0", ""))
	must(netlab.IP("-n", as1, "addr", "add", "198.18.0.1/30", "dev", "mgmt0"))
	must(netlab.IP("-n", as2, "addr", "add", "198.18.0.2/30", "dev", "mgmt0"))
	must(netlab.IP("-n", h1, "addr", "add", "198.51.100.10/24", "dev", "eth0"))
	must(netlab.IP("-n", h2, "addr", "add", "198.51.100.200/24", "dev", "eth0"))
	if _, err := netlab.Exec(h1, "ethtool", "-K", "eth0", "tx", "off"); err != nil {
		t.Skipf("ethtool: %v", err)
	}

	// "$ sudo psavd -config asN/engine.toml", in AS N's namespace.
	asnIn := regexp.MustCompile(`as(\d+)/`)
	for _, l := range d.consoleLines("sudo psavd -config ") {
		cfg := strings.TrimPrefix(l, "sudo psavd -config ")
		m := asnIn.FindStringSubmatch(cfg)
		if m == nil || nsOf[m[1]] == "" {
			t.Fatalf("docs/join.md: which AS runs %q?", l)
		}
		startPsavd(t, bin, nsOf[m[1]], filepath.Join(dir, cfg), true)
	}

	// "$ psavctl status …", in the namespace of its -asn, from the
	// walkthrough's directory.
	statusOf := map[string]func() (string, error){}
	asnFlag := regexp.MustCompile(`-asn (\d+)`)
	for _, l := range d.consoleLines("psavctl status ") {
		m := asnFlag.FindStringSubmatch(l)
		if m == nil || nsOf[m[1]] == "" {
			t.Fatalf("docs/join.md: whose status is %q?", l)
		}
		args := append([]string{"netns", "exec", nsOf[m[1]], psavctlBinary(t)}, strings.Fields(strings.TrimPrefix(l, "psavctl "))...)
		statusOf[m[1]] = func() (string, error) {
			cmd := exec.Command("ip", args...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
	}
	if len(statusOf) != 2 {
		t.Fatalf("docs/join.md: status commands for %d ASes", len(statusOf))
	}
	digestRE := regexp.MustCompile(`membership: 2 members \[65001 65002\], digest (\S+)`)
	var last map[string]string
	converged := false
	for deadline := time.Now().Add(60 * time.Second); !converged && time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		last = map[string]string{}
		digests := map[string]string{}
		for asn, f := range statusOf {
			out, err := f()
			last[asn] = out
			if err != nil {
				continue
			}
			other := "65002"
			if asn == "65002" {
				other = "65001"
			}
			if m := digestRE.FindStringSubmatch(out); m != nil &&
				regexp.MustCompile(`AS`+other+`\s+up\s.*X25519MLKEM768`).MatchString(out) {
				digests[asn] = m[1]
			}
		}
		converged = len(digests) == 2 && digests["65001"] == digests["65002"]
	}
	if !converged {
		t.Fatalf("the two ACS did not peer with one membership digest:\nAS65001:\n%s\nAS65002:\n%s", last["65001"], last["65002"])
	}
	t.Logf("psavctl status, AS65001:\n%s\nAS65002:\n%s", last["65001"], last["65002"])
	for asn, peer := range map[string]string{"65001": "65002", "65002": "65001"} {
		if m := rawMetrics(t, nsOf[asn], "127.0.0.1:9100"); !strings.Contains(m, fmt.Sprintf(`psavd_acs_peer_up{peer=%q,state="up"} 1`, peer)) ||
			!strings.Contains(m, "psavd_acs_members 2") {
			t.Errorf("AS%s's ACS metrics: peer %s not up or not 2 members", asn, peer)
		}
	}

	// Traffic from AS 65001's prefix to AS 65002's: tagged at AS 65001's
	// border, validated (and stripped) at AS 65002's, delivered.
	sniff, err := lab.Sniff(h2, "eth0")
	must(err)
	defer sniff.Close()
	var sink net.PacketConn
	must(netlab.Do(h2, func() error {
		var err error
		sink, err = net.ListenPacket("udp", "198.51.100.200:5555")
		return err
	}))
	defer sink.Close()
	ctx := context.Background()
	counters := func(ns string) lab.Counters {
		c, err := lab.Scrape(ctx, ns, "127.0.0.1:9100")
		must(err)
		return c
	}
	// Until the negotiated start epoch (two epochs ahead) there are no keys
	// and datagrams pass untagged: keep sending for up to a minute.
	ok := false
	for i, deadline := 0, time.Now().Add(60*time.Second); !ok && time.Now().Before(deadline); i++ {
		payload := fmt.Sprintf("joined-%04d", i)
		must(sendDatagram(h1, "198.51.100.200:5555", payload))
		delivered := sniff.Wait(ctx, 200*time.Millisecond, func(fs []lab.Captured) bool {
			for _, f := range fs {
				if !f.Outgoing && bytes.Contains(f.Frame, []byte(payload)) {
					return true
				}
			}
			return false
		})
		ok = delivered && counters(as1).Total("packets", "tagged") >= 1 && counters(as2).Total("packets", "validated") >= 1
		if !ok {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !ok {
		t.Fatalf("no packet tagged at AS 65001, validated at AS 65002 and delivered; AS65001 %v; AS65002 %v", counters(as1), counters(as2))
	}
	for _, f := range sniff.Frames() {
		if !f.Outgoing && bytes.Contains(f.Frame, []byte("joined-")) && f.Frame[14] != 0x45 {
			t.Fatalf("a delivered packet still carries IP options (the tag?): %x", f.Frame[14:40])
		}
	}
	t.Logf("tagged at AS65001: %v, validated at AS65002: %v", counters(as1).Total("packets", "tagged"), counters(as2).Total("packets", "validated"))

	// §8: "$ psavctl -socket asN/psavd.sock …", in AS N's namespace. The
	// update, then the exit, each in force on both sides: both ACS hold it
	// (members -json) and both data planes use it (their table sizes).
	socketOf := regexp.MustCompile(`-socket as(\d+)/`)
	ctl := func(l string) (string, error) {
		m := socketOf.FindStringSubmatch(l)
		if m == nil || nsOf[m[1]] == "" {
			t.Fatalf("docs/join.md: which AS runs %q?", l)
		}
		cmd := exec.Command("ip", append([]string{"netns", "exec", nsOf[m[1]], psavctlBinary(t)}, strings.Fields(strings.TrimPrefix(l, "psavctl "))...)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	submits := d.consoleLines("psavctl -socket ")
	var submitLines []string
	for _, l := range submits {
		if strings.Contains(l, " record submit ") {
			submitLines = append(submitLines, l)
		}
	}
	if len(submitLines) != 2 || !strings.Contains(submitLines[0], "update.rec") || !strings.Contains(submitLines[1], "exit.rec") {
		t.Fatalf("docs/join.md: want the update's then the exit's record submit, have %q", submitLines)
	}
	members := func(asn string) *mgmtpb.MembersReply {
		out, err := ctl("psavctl -socket as" + asn + "/psavd.sock members -json")
		if err != nil {
			t.Fatalf("members at AS%s: %v\n%s", asn, err, out)
		}
		var r mgmtpb.MembersReply
		if err := protojson.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("members -json at AS%s: %v\n%s", asn, err, out)
		}
		return &r
	}
	record := func(r *mgmtpb.MembersReply, asn uint32) *mgmtpb.MemberRecord {
		for _, m := range r.GetMembers() {
			if m.GetAsn() == asn {
				return m
			}
		}
		return nil
	}
	tableSize := func(ns, table string) float64 {
		return metric(t, ns, "127.0.0.1:9100", "psavd_table_entries", map[string]string{"table": table})
	}
	inForce := func(what string, ok func(asn string, r *mgmtpb.MembersReply) bool) {
		t.Helper()
		var last string
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
			all := true
			last = ""
			for _, asn := range []string{"65001", "65002"} {
				r := members(asn)
				last += fmt.Sprintf("AS%s: %v\n", asn, r)
				all = all && ok(asn, r)
			}
			if all {
				return
			}
		}
		t.Fatalf("%s not in force on both sides:\n%s", what, last)
	}
	if out, err := ctl(submitLines[0]); err != nil {
		t.Fatalf("%s: %v\n%s", submitLines[0], err, out)
	} else {
		t.Logf("%s:\n%s", submitLines[0], out)
	}
	inForce("AS65001's update", func(asn string, r *mgmtpb.MembersReply) bool {
		m := record(r, 65001)
		return m != nil && m.GetVersion() == 2 && m.GetKind() == "update" && strings.Join(m.GetPrefixes(), ",") == "192.0.2.0/24,198.51.100.0/25" &&
			tableSize(nsOf[asn], "prefixes") == 3
	})
	if out, err := ctl(submitLines[1]); err != nil {
		t.Fatalf("%s: %v\n%s", submitLines[1], err, out)
	} else {
		t.Logf("%s:\n%s", submitLines[1], out)
	}
	inForce("AS65002's exit", func(asn string, r *mgmtpb.MembersReply) bool {
		m := record(r, 65002)
		return m != nil && m.GetVersion() == 2 && m.GetKind() == "exit" && len(m.GetPrefixes()) == 0 &&
			(asn != "65001" || tableSize(as1, "members") == 1 && tableSize(as1, "prefixes") == 2)
	})
}
