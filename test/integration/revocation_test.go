package integration

import (
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestRevocationBySIGHUP is issue 14's revocation check with two real psavd
// ACS on loopback: AS 65001's [acs] names a CRL of the alliance CA, empty
// at first; the pair comes up. The CRL is rewritten to revoke AS 65002's
// ACS certificate and AS 65001 gets SIGHUP: the live session is closed at
// once, and every redial (AS 65001, the lower ASN, dials) fails at the
// handshake on the revoked server certificate, so the pair stays down.
func TestRevocationBySIGHUP(t *testing.T) {
	bin := psavdBinary(t)
	al := newAlliance(t)
	ports := freePorts(t, 3)
	acsAt := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	metricsAt := acsAt(2)
	crlFile := al.write(t, "alliance.crl", mustCRL(t, al, 1))

	cfg1 := "[psav]\nasn = 65001\n" + fmt.Sprintf("[metrics]\nlisten = %q\n", metricsAt) +
		strings.Replace(al.acsSection(t, 65001, "198.51.100.0/25", acsAt(0), 65002, acsAt(1)), "[acs]\n", fmt.Sprintf("[acs]\ncrl = [%q]\n", crlFile), 1)
	path1 := al.write(t, "rev65001.toml", []byte(cfg1))
	p1 := startPsavd(t, bin, "", path1, true)
	cfg2 := "[psav]\nasn = 65002\n" + al.acsSection(t, 65002, "198.51.100.128/25", acsAt(1), 65001, acsAt(0))
	startPsavd(t, bin, "", al.write(t, "rev65002.toml", []byte(cfg2)), false)

	up := func() float64 {
		return metric(t, "", metricsAt, "psavd_acs_peer_up", map[string]string{"peer": "65002", "state": "up"})
	}
	eventually(t, "the pair up", func() bool { return up() == 1 })

	// Revoke AS 65002's ACS certificate (the one acsSection wrote) and reload.
	cert2, err := tls.LoadX509KeyPair(al.dir+"/as65002.pem", al.dir+"/as65002.key")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crlFile, mustCRL(t, al, 2, cert2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p1.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the revoked peer's session closed", func() bool {
		return strings.Contains(p1.log.String(), "session closed: the peer's certificate is revoked")
	})
	handshakes := func() float64 {
		return metric(t, "", metricsAt, "psavd_acs_events_total", map[string]string{"event": "dial-failure"})
	}
	before := handshakes()
	eventually(t, "redials to AS65002 refused at the handshake", func() bool { return handshakes() >= before+2 })
	// The machine runs on from the clock until the peer is declared dead
	// (dead_after heartbeats), then the pair is down.
	eventually(t, "the pair down", func() bool { return up() == 0 })
	// And it stays down: several redials later still not up.
	eventually(t, "more refused redials", func() bool { return handshakes() >= before+4 })
	if !strings.Contains(p1.log.String(), "certificate revoked") && !strings.Contains(p1.log.String(), "revoked") {
		t.Fatal("no log of a revoked certificate")
	}
	if up() != 0 {
		t.Fatal("the pair came back up with a revoked certificate")
	}
}

func mustCRL(t *testing.T, al *alliance, n int64, revoked ...tls.Certificate) []byte {
	t.Helper()
	b, err := al.ca.CRLPEM(n, revoked...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
