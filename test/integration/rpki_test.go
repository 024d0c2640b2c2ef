package integration

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/psavd/psavd/control/acspb"
	"github.com/psavd/psavd/control/pair"
	"github.com/psavd/psavd/control/pki"
	"github.com/psavd/psavd/control/rpki/rpkitest"
	"github.com/psavd/psavd/internal/testpki"
)

// TestRPKIWithdrawal runs two real psavd ACS on loopback; AS65002's vets
// membership against a real StayRTR over RTR-over-TLS ([rpki] transport =
// "tls"). Once AS65001's record is in force there, the ROA covering its
// prefix is withdrawn (StayRTR re-reads its VRP file and sends Serial
// Notify): under fail_closed the ACS takes the record out of force (gone
// from Status's members and from the tables it feeds its ABRs, as psavctl
// tables shows them), counts it held aside, and
// puts it back when the ROA returns; under fail_open it keeps the record
// and raises psavd_rpki_uncovered_records with a log line. A third run
// does fail_closed over RTR-over-SSH.
func TestRPKIWithdrawal(t *testing.T) {
	for _, policy := range []string{"fail_closed", "fail_open"} {
		t.Run(policy, func(t *testing.T) { rpkiWithdrawal(t, policy, "tls") })
	}
	// The same over RTR-over-SSH (RFC 8210 §9.2), key authentication and a
	// pinned host key.
	t.Run("fail_closed_ssh", func(t *testing.T) { rpkiWithdrawal(t, "fail_closed", "ssh") })
}

// sshFiles writes an SSH host key for StayRTR (PEM), a client key for
// psavd (PEM) and the files that bind them: authorized_keys for StayRTR,
// the host's public key for [rpki] ssh_host_key.
func sshFiles(t *testing.T, dir string) (tr *rpkitest.SSH, clientKey, hostPub string) {
	t.Helper()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := func(name string) (ssh.Signer, string) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		return signer, write(name, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	host, hostFile := key("rtr-host.pem")
	client, clientFile := key("rtr-client.pem")
	tr = &rpkitest.SSH{HostKeyFile: hostFile, AuthorizedKeysFile: write("rtr-authorized_keys", ssh.MarshalAuthorizedKey(client.PublicKey())), User: "rpki"}
	return tr, clientFile, write("rtr-host.pub", ssh.MarshalAuthorizedKey(host.PublicKey()))
}

func rpkiWithdrawal(t *testing.T, policy, transport string) {
	bin := psavdBinary(t)
	stay := rpkitest.Binary(t)
	al := newAlliance(t)
	rtrPKI, err := testpki.NewServerPKI(t.TempDir(), "rtr.example.test")
	if err != nil {
		t.Fatal(err)
	}
	mp := netip.MustParsePrefix
	covered := []rpkitest.VRP{{Prefix: mp("198.51.100.0/24"), MaxLen: 24, ASN: 65001}, {Prefix: mp("203.0.113.0/24"), MaxLen: 24, ASN: 65002}}
	vrpFile := filepath.Join(al.dir, "vrps.json")
	rpkitest.WriteVRPs(t, vrpFile, covered)
	var rtr, rpkiKeys string
	switch transport {
	case "tls":
		rtr = rpkitest.Start(t, stay, vrpFile, &rpkitest.TLS{CertFile: rtrPKI.CertFile, KeyFile: rtrPKI.KeyFile})
		rpkiKeys = fmt.Sprintf("transport = \"tls\"\ntls_server_name = \"rtr.example.test\"\ntls_ca = %q\n", rtrPKI.CAFile)
	case "ssh":
		tr, clientKey, hostPub := sshFiles(t, al.dir)
		rtr = rpkitest.Start(t, stay, vrpFile, tr)
		rpkiKeys = fmt.Sprintf("transport = \"ssh\"\nssh_user = \"rpki\"\nssh_key = %q\nssh_host_key = %q\n", clientKey, hostPub)
	}

	ports := freePorts(t, 3)
	asns := []uint32{65001, 65002}
	prefixes := []string{"198.51.100.0/24", "203.0.113.0/24"}
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	var procs [2]*psavdProc
	for i, asn := range asns {
		other := 1 - i
		cfg := fmt.Sprintf("[psav]\nasn = %d\nepoch_seconds = 60\n", asn) +
			al.acsSection(t, asn, prefixes[i], fmt.Sprintf("127.0.0.1:%d", ports[i]), asns[other], fmt.Sprintf("127.0.0.1:%d", ports[other]))
		if asn == 65002 {
			cfg += fmt.Sprintf("[metrics]\nlisten = %q\n[rpki]\nserver = %q\npolicy = %q\n", metricsAddr, rtr, policy) + rpkiKeys
		}
		procs[i] = startPsavd(t, bin, "", al.write(t, fmt.Sprintf("as%d.toml", asn), []byte(cfg)), asn == 65002)
	}

	op, err := al.ca.IssueOp(65002, "noc", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	status := func() (*acspb.StatusReply, error) {
		tlsCfg, err := pair.ClientConfig(pair.Identity{ASN: 65002, Role: pki.RoleOp, Cert: op, CA: al.ca.Pool()}, 65002)
		if err != nil {
			return nil, err
		}
		conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", ports[1]), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return acspb.NewACSClient(conn).Status(ctx, &acspb.StatusRequest{})
	}
	members := func() []uint32 {
		st, err := status()
		if err != nil {
			return nil
		}
		return st.Members
	}
	// The tables the ACS feeds its ABRs, as its operator sees them
	// (psavctl tables): AS65001's prefix is there while its record is in
	// force.
	ctl := psavctlBinary(t)
	opCert, opKey := al.issueFiles(t, "as65002-op-noc", testpki.OpURI(65002, "noc"))
	inTables := func() bool {
		out, err := exec.Command(ctl, "tables", "-acs", fmt.Sprintf("127.0.0.1:%d", ports[1]), "-asn", "65002",
			"-cert", opCert, "-key", opKey, "-ca", al.caFile).CombinedOutput()
		if err != nil {
			t.Fatalf("psavctl tables: %v\n%s", err, out)
		}
		return strings.Contains(string(out), "198.51.100.0/24")
	}
	gauge := func(name string) float64 { return metric(t, "", metricsAddr, name, nil) }
	wait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(200 * time.Millisecond) {
			if time.Now().After(deadline) {
				st, err := status()
				t.Fatalf("timed out waiting for %s; status %v %v", what, st, err)
			}
		}
	}
	both := []uint32{65001, 65002}
	wait("AS65001's record in force at AS65002, RTR over "+transport+" up", func() bool {
		return slices.Equal(members(), both) &&
			metric(t, "", metricsAddr, "psavd_rpki_session_up", map[string]string{"transport": transport}) == 1 &&
			gauge("psavd_rpki_vrps") == 2
	})
	if gauge("psavd_rpki_data_expired") != 0 || gauge("psavd_rpki_uncovered_records") != 0 || gauge("psavd_rpki_records_aside") != 0 {
		t.Fatalf("covered records raise an alarm")
	}
	if !inTables() {
		t.Fatal("AS65001's prefix is not in the tables of AS65002's ACS")
	}
	passes := gauge("psavd_rpki_revalidations_total")

	rpkitest.WriteVRPs(t, vrpFile, covered[1:]) // AS65001's ROA withdrawn
	wait("the withdrawal to reach AS65002", func() bool { return gauge("psavd_rpki_vrps") == 1 && gauge("psavd_rpki_revalidations_total") > passes })
	if policy == "fail_closed" {
		wait("AS65001's record out of force", func() bool {
			return slices.Equal(members(), []uint32{65002}) && gauge("psavd_rpki_records_aside") == 1
		})
		if gauge("psavd_rpki_records_set_aside_total") != 1 || gauge("psavd_rpki_uncovered_records") != 0 {
			t.Errorf("set aside %v, uncovered %v", gauge("psavd_rpki_records_set_aside_total"), gauge("psavd_rpki_uncovered_records"))
		}
		if !strings.Contains(procs[1].log.String(), "taken out of force") {
			t.Error("no log line for the record taken out of force")
		}
		if inTables() {
			t.Error("the prefix of the record out of force is still in the ABRs' tables")
		}
		rpkitest.WriteVRPs(t, vrpFile, covered) // the ROA is back
		wait("AS65001's record back in force", func() bool {
			return slices.Equal(members(), both) && gauge("psavd_rpki_records_aside") == 0 && gauge("psavd_rpki_records_readmitted_total") == 1 && inTables()
		})
		return
	}
	wait("the fail_open alarm", func() bool { return gauge("psavd_rpki_uncovered_records") == 1 })
	if m := members(); !slices.Equal(m, both) || gauge("psavd_rpki_records_aside") != 0 {
		t.Errorf("fail_open dropped a record: members %v", m)
	}
	if !inTables() {
		t.Error("fail_open took the prefix out of the tables")
	}
	if !strings.Contains(procs[1].log.String(), "kept in force (fail_open)") {
		t.Error("no log line for the uncovered record")
	}
	rpkitest.WriteVRPs(t, vrpFile, covered)
	wait("the alarm to clear", func() bool { return gauge("psavd_rpki_uncovered_records") == 0 })
}
