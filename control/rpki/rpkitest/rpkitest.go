// Package rpkitest runs a real RTR cache for tests: StayRTR
// (github.com/bgp/stayrtr) serving a VRP file the test writes, over plain
// TCP or TLS. The binary is $STAYRTR, else the Debian package's
// (tools/debian-packages.txt); without it the test is skipped and says why
// (failed under PSAVD_REQUIRE_TOOLS=1, as internal/testtool does).
package rpkitest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/psavd/psavd/internal/syncbuf"
	"github.com/psavd/psavd/internal/testtool"
)

// VRP is one ROA payload for the file: ASN may originate Prefix up to MaxLen.
type VRP struct {
	Prefix netip.Prefix
	MaxLen uint8
	ASN    uint32
}

// Binary is the StayRTR to run.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("STAYRTR"); p != "" {
		return p
	}
	return testtool.Path(t, "stayrtr", "stayrtr")
}

type jsonROA struct {
	Prefix    string `json:"prefix"`
	MaxLength int    `json:"maxLength"`
	ASN       string `json:"asn"`
	TA        string `json:"ta"`
}

// WriteVRPs writes the rpki-client JSON format StayRTR reads with -cache,
// atomically (StayRTR must never see a half-written file). StayRTR re-reads
// it every second (Start's -refresh 1): rewriting it announces and
// withdraws VRPs.
func WriteVRPs(t testing.TB, path string, vrps []VRP) {
	t.Helper()
	doc := struct {
		Metadata map[string]any `json:"metadata"`
		ROAs     []jsonROA      `json:"roas"`
	}{Metadata: map[string]any{"buildtime": time.Now().UTC().Format(time.RFC3339)}, ROAs: []jsonROA{}}
	for _, v := range vrps {
		doc.ROAs = append(doc.ROAs, jsonROA{v.Prefix.String(), int(v.MaxLen), fmt.Sprintf("AS%d", v.ASN), "psavd-test"})
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TLS names the server certificate and key for RTR over TLS.
type TLS struct{ CertFile, KeyFile string }

// SSH is RTR over SSH: the server's host key (PEM), the authorized_keys
// file of the client keys it accepts, and the user name.
type SSH struct{ HostKeyFile, AuthorizedKeysFile, User string }

// Transport is how the cache serves: nil for plain TCP, *TLS or *SSH.
type Transport any

// Start runs StayRTR on a free loopback port serving file — over tr (nil:
// plain TCP) — and returns its address once it accepts connections. It is
// killed on cleanup, its output logged if the test failed. extra are more
// flags (e.g. "-protocol", "0").
func Start(t testing.TB, bin, file string, tr Transport, extra ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	args := []string{
		"-metrics.addr", "127.0.0.1:0",
		"-cache", file,
		"-checktime=false",
		"-refresh", "1", // re-read the file every second
		"-rtr.refresh", "3600", // so a quick update can only come from Serial Notify
		"-rtr.retry", "1",
		"-rtr.expire", "600",
	}
	switch tr := tr.(type) {
	case *TLS:
		args = append(args, "-bind", "", "-tls.bind", addr, "-tls.cert", tr.CertFile, "-tls.key", tr.KeyFile)
	case *SSH:
		args = append(args, "-bind", "", "-ssh.bind", addr, "-ssh.key", tr.HostKeyFile,
			"-ssh.method.key", "-ssh.auth.key.file", tr.AuthorizedKeysFile, "-ssh.auth.user", tr.User)
	case nil:
		args = append(args, "-bind", addr)
	default:
		t.Fatalf("rpkitest.Start: transport %T", tr)
	}
	cmd := exec.Command(bin, append(args, extra...)...)
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stayrtr: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("stayrtr output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		select {
		case <-exited:
			t.Fatalf("stayrtr exited before listening on %s:\n%s", addr, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("stayrtr not listening on %s after 15 s:\n%s", addr, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
