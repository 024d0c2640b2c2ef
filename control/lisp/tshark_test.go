package lisp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/psavd/psavd/internal/testtool"
)

// pcapFrames writes each payload as an Ethernet/IPv4/UDP frame
// 127.0.0.1:4342 -> 127.0.0.2:4342 into a classic pcap file (LINKTYPE_ETHERNET).
func writePcap(path string, payloads [][]byte) error {
	var f bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	f.Write(hdr)
	for i, p := range payloads {
		eth := []byte{0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00}
		pkt, err := AppendInnerIPUDP(eth, InnerHeader{
			Source: netip.MustParseAddrPort("127.0.0.1:4342"), Destination: netip.MustParseAddrPort("127.0.0.2:4342"), TTL: 64,
		}, p)
		if err != nil {
			return err
		}
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[0:], uint32(1700000000+i))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(pkt)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(pkt)))
		f.Write(rec)
		f.Write(pkt)
	}
	return os.WriteFile(path, f.Bytes(), 0o644)
}

// tsharkFrames is every packet the tshark test writes: all message vectors,
// and signed Map-Register/Map-Notify/Map-Notify-Ack with both lengths and
// with an RFC 9301 Key ID in the high octet of the key field.
func tsharkFrames(t *testing.T) (names []string, frames [][]byte, want []map[string]string) {
	for _, v := range msgVectors {
		names = append(names, v.name)
		frames = append(frames, v.wire)
		w, ok := tsharkWant[v.name]
		if !ok {
			t.Fatalf("no tshark expectation for %s", v.name)
		}
		want = append(want, w)
	}
	for _, c := range []struct {
		typ   byte
		keyID uint16
		n     int
	}{{3, 1, 12}, {3, 1, 20}, {3, 2, 16}, {3, 2, 32}, {4, 2, 16}, {5, 1, 20}, {3, 0x0301, 20}, {4, 0x0702, 32}} {
		b := authVector(c.typ, c.keyID, c.n)
		if err := Sign(b, c.keyID, testKey, c.n); err != nil {
			t.Fatal(err)
		}
		names = append(names, fmt.Sprintf("%v-signed-key%d-len%d", Type(c.typ), c.keyID, c.n))
		frames = append(frames, b)
		w := map[string]string{"lisp.type": fmt.Sprint(c.typ)}
		if c.typ != 5 {
			w["lisp.keyid"] = fmt.Sprintf("0x%04x", c.keyID)
			w["lisp.authlen"] = fmt.Sprint(c.n)
			w["lisp.auth"] = hex.EncodeToString(b[16 : 16+c.n])
			w["lisp.lcaf.asn"] = "64512"
		}
		want = append(want, w)
	}
	return names, frames, want
}

// tsharkWant is what tshark must print (checksum status 1 = Good) for each message vector (fields
// joined with "," when repeated). tshark 4.0 does not know Map-Notify-Ack
// (type 5): it prints "Type: Unknown (5)" and hands the rest to "data", so
// only the type is checked for it.
var tsharkWant = map[string]map[string]string{
	"map-request-ipv4": {"lisp.type": "1", "lisp.records": "1", "lisp.nonce": "0x0102030405060708", "lisp.irc": "0",
		"lisp.mreq.srceid.ipv4": "10.0.0.1", "lisp.mreq.itr_rloc_ipv4": "192.0.2.1",
		"lisp.mreq.record.prefix.length": "24", "lisp.mreq.record.prefix.ipv4": "10.1.2.0"},
	"map-request-smr-iid-mapreply": {"lisp.type": "1", "lisp.records": "1", "lisp.irc": "1", "lisp.mreq.flags.smr": "1",
		"lisp.mreq.flags.mrp": "1", "lisp.mreq.itr_rloc_ipv4": "192.0.2.1", "lisp.mreq.itr_rloc_ipv6": "2001:db8::1",
		"lisp.lcaf.type": "2,2", "lisp.lcaf.iid": "7,7", "lisp.lcaf.iid.ipv4": "10.0.0.1,10.1.2.0",
		"lisp.mapping.ttl": "1440", "lisp.mapping.auth": "1", "lisp.mapping.eid.ipv4": "10.1.2.0", "lisp.loc.locator": "192.0.2.1"},
	"map-request-probe-pitr": {"lisp.type": "1", "lisp.mreq.flags.probe": "1", "lisp.mreq.flags.pitr": "1",
		"lisp.mreq.flags.smr": "0", "lisp.mreq.record.prefix.length": "32", "lisp.mreq.record.prefix.ipv4": "10.1.2.3"},
	"map-reply": {"lisp.type": "2", "lisp.records": "2", "lisp.mapping.ttl": "1440,15", "lisp.mapping.loccnt": "2,0",
		"lisp.mapping.eid.masklen": "24,16", "lisp.mapping.act": "0,2", "lisp.mapping.auth": "1,0", "lisp.mapping.ver": "1,0",
		"lisp.mapping.eid.ipv4": "10.1.2.0,10.2.0.0", "lisp.loc.locator": "192.0.2.1,2001:db8::2",
		"lisp.loc.flags": "0x0005,0x0001", "lisp.loc.priority": "1,2", "lisp.loc.weight": "100,50"},
	"map-reply-probe-lcafs": {"lisp.type": "2", "lisp.records": "1", "lisp.mrep.flags.probe": "1", "lisp.mrep.flags.enlr": "1",
		"lisp.lcaf.type": "9,13,1", "lisp.lcaf.mcinfo.flags": "0x01", "lisp.lcaf.mcinfo.src.ipv4": "10.0.0.1",
		"lisp.lcaf.mcinfo.grp.ipv4": "224.1.1.1", "lisp.lcaf.mcinfo.src.masklen": "32", "lisp.lcaf.mcinfo.grp.masklen": "32",
		"lisp.lcaf.rle_entry.level": "0,1", "lisp.lcaf.rle_entry.ipv4": "192.0.2.1,192.0.2.2",
		"lisp.lcaf.afi_list.ipv4": "192.0.2.1", "lisp.lcaf.afi_list.ipv6": "2001:db8::1", "lisp.loc.flags": "0x0001,0x0003"},
	"map-register-asn": {"lisp.type": "3", "lisp.records": "1", "lisp.mreg.flags.pmr": "1", "lisp.mreg.flags.wmn": "1",
		"lisp.mreg.flags.xtrid": "0", "lisp.keyid": "0x0001", "lisp.authlen": "12", "lisp.lcaf.type": "3",
		"lisp.lcaf.asn": "64512", "lisp.lcaf.asn.ipv4": "10.1.0.0", "lisp.mapping.eid.masklen": "16", "lisp.loc.locator": "192.0.2.1"},
	"map-register-xtrid-iid6": {"lisp.type": "3", "lisp.nonce": "0x1122334455667788", "lisp.mreg.flags.xtrid": "1",
		"lisp.mreg.flags.pmr": "0", "lisp.keyid": "0x0002", "lisp.authlen": "16", "lisp.lcaf.iid": "42",
		"lisp.lcaf.iid.ipv6": "2001:db8:1::", "lisp.mapping.eid.masklen": "48", "lisp.loc.locator": "2001:db8::1",
		"lisp.xtrid": "000102030405060708090a0b0c0d0e0f", "lisp.siteid": "0000000000000007"},
	"map-notify": {"lisp.type": "4", "lisp.records": "1", "lisp.mnot.flags.xtrid": "0", "lisp.keyid": "0x0001",
		"lisp.authlen": "12", "lisp.lcaf.asn": "64512"},
	"map-notify-xtrid": {"lisp.type": "4", "lisp.mnot.flags.xtrid": "1", "lisp.lcaf.asn": "64512",
		"lisp.xtrid": "000102030405060708090a0b0c0d0e0f", "lisp.siteid": "0000000000000007"},
	"map-notify-ack": {"lisp.type": "5"},
	"ecm-ipv4": {"lisp.type": "8,1", "lisp.ecm.flags.sec": "0", "ip.src": "127.0.0.1,10.0.0.1", "ip.dst": "127.0.0.2,10.1.2.3",
		"udp.srcport": "4342,50000", "udp.checksum.status": "1,1", "ip.checksum.status": "1,1", "lisp.mreq.record.prefix.ipv4": "10.1.2.0"},
	"ecm-ipv6-security": {"lisp.type": "8,1", "lisp.ecm.flags.sec": "1", "ipv6.src": "2001:db8::1", "ipv6.dst": "2001:db8:1::3",
		"udp.checksum.status": "1,1", "lisp.mreq.record.prefix.ipv4": "10.1.2.0"},
}

func runTshark(t *testing.T, pcap string, args ...string) []string {
	t.Helper()
	base := []string{"-r", pcap, "-n", "-d", "udp.port==4342,lisp",
		"-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE"}
	out, err := exec.Command("tshark", append(base, args...)...).Output()
	if err != nil {
		t.Fatalf("tshark %v: %v", args, err)
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

func TestTshark(t *testing.T) {
	testtool.Path(t, "tshark", "tshark")
	names, frames, want := tsharkFrames(t)
	dir := t.TempDir()
	if d := os.Getenv("LISP_PCAP_DIR"); d != "" {
		dir = d
	}
	pcap := filepath.Join(dir, "lisp.pcap")
	if err := writePcap(pcap, frames); err != nil {
		t.Fatal(err)
	}
	if v, err := exec.Command("tshark", "--version").Output(); err == nil {
		t.Logf("%s", bytes.SplitN(v, []byte("\n"), 2)[0])
	}

	// Every frame: a lisp layer, nothing malformed, no expert info.
	lines := runTshark(t, pcap, "-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "frame.protocols", "-e", "_ws.malformed", "-e", "_ws.expert.severity", "-e", "_ws.expert.message", "-e", "lisp.type")
	if len(lines) != len(frames) {
		t.Fatalf("tshark printed %d lines for %d frames", len(lines), len(frames))
	}
	for i, l := range lines {
		f := strings.Split(l, "|")
		t.Logf("%-32s %s", names[i], l)
		if !strings.Contains(f[0], ":lisp") {
			t.Errorf("%s: not decoded as LISP: %s", names[i], f[0])
		}
		if f[1] != "" || strings.Contains(l, "malformed") {
			t.Errorf("%s: malformed: %s", names[i], l)
		}
		if f[2] != "" || f[3] != "" {
			t.Errorf("%s: expert info: severity %s: %s", names[i], f[2], f[3])
		}
	}

	// Key fields match what we encoded.
	var fields []string
	for _, w := range want {
		for k := range w {
			if !slices.Contains(fields, k) {
				fields = append(fields, k)
			}
		}
	}
	slices.Sort(fields)
	args := []string{"-T", "fields", "-E", "separator=|", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	lines = runTshark(t, pcap, args...)
	if len(lines) != len(frames) {
		t.Fatalf("tshark printed %d lines for %d frames", len(lines), len(frames))
	}
	for i, l := range lines {
		got := strings.Split(l, "|")
		for j, f := range fields {
			if w, ok := want[i][f]; ok && got[j] != w {
				t.Errorf("%s: %s = %q, want %q", names[i], f, got[j], w)
			}
		}
	}
}
