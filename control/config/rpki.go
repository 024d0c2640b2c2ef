package config

import (
	"crypto/tls"
	"os"

	"golang.org/x/crypto/ssh"

	"github.com/psavd/psavd/control/config/schema"
)

// RPKIPolicy is what an ACS does with membership records when RPKI cannot
// vouch for them (docs/config.md [rpki]).
type RPKIPolicy uint8

const (
	// RPKIFailClosed: a record not covered by the VRPs, or judged while
	// there is no usable RPKI data (before the first download, after the
	// data expired), is refused, and one held is taken out of force.
	RPKIFailClosed RPKIPolicy = iota
	// RPKIFailOpen: without usable data records are accepted; a held record
	// that the VRPs stop covering stays in force and raises an alarm.
	RPKIFailOpen
)

func (p RPKIPolicy) String() string {
	if p == RPKIFailOpen {
		return "fail_open"
	}
	return "fail_closed"
}

// RPKI is [rpki]: an RTR server (RFC 8210) whose validated ROA payloads vet
// membership records (docs/wire.md §3.2); used by an ACS.
type RPKI struct {
	Server string // host:port of the RTR cache
	Policy RPKIPolicy
	// TLS is the client side of RTR over TLS (RFC 8210 §9.3): server name,
	// trust anchors and optional client certificate. Nil: plain TCP.
	TLS *tls.Config
	// SSH is the client side of RTR over SSH (RFC 8210 §9.2): user, key and
	// the cache's pinned host key. Nil unless transport = "ssh".
	SSH *ssh.ClientConfig
}

func (c *Config) checkRPKI(k *checker, f *schema.File) {
	r := f.RPKI
	if r == nil {
		return
	}
	c.RPKI = &RPKI{Server: r.Server}
	if r.Server == "" {
		k.add("rpki.server", "missing")
	} else {
		k.hostPort("rpki.server", r.Server)
	}
	if f.ACS == nil {
		k.add("rpki", "only an ACS uses RPKI data: add [acs] or remove [rpki]")
	}
	if r.Policy != "" && k.oneOf("rpki.policy", r.Policy, "fail_closed", "fail_open") && r.Policy == "fail_open" {
		c.RPKI.Policy = RPKIFailOpen
	}
	transport := r.Transport
	if transport == "" {
		transport = "tcp"
	}
	if !k.oneOf("rpki.transport", transport, "tcp", "tls", "ssh") {
		return
	}
	only := func(which string, keys [][2]string) {
		for _, kv := range keys {
			if kv[1] != "" {
				k.add("rpki."+kv[0], "only with transport = \"%s\"", which)
			}
		}
	}
	tlsKeys := [][2]string{{"tls_server_name", r.TLSServerName}, {"tls_ca", r.TLSCA}, {"tls_cert", r.TLSCert}, {"tls_key", r.TLSKey}}
	sshKeys := [][2]string{{"ssh_user", r.SSHUser}, {"ssh_key", r.SSHKey}, {"ssh_host_key", r.SSHHostKey}}
	if transport != "tls" {
		only("tls", tlsKeys)
	}
	if transport != "ssh" {
		only("ssh", sshKeys)
	}
	switch transport {
	case "tcp":
		return
	case "ssh":
		c.RPKI.SSH = k.rtrSSH(r)
		return
	}
	cfg := &tls.Config{ServerName: r.TLSServerName, MinVersion: tls.VersionTLS12}
	if r.TLSCA != "" {
		// Without tls_ca the system's trust anchors verify the cache.
		cfg.RootCAs = k.caPool("rpki.tls_ca", r.TLSCA)
	}
	switch {
	case r.TLSCert != "" && r.TLSKey != "":
		if !k.privateKey("rpki.tls_key", r.TLSKey) {
			break
		}
		cert, err := tls.LoadX509KeyPair(r.TLSCert, r.TLSKey)
		if err != nil {
			k.add("rpki.tls_cert", "%v", err)
		} else {
			cfg.Certificates = []tls.Certificate{cert}
		}
	case r.TLSCert != "":
		k.add("rpki.tls_key", "missing (tls_cert is set)")
	case r.TLSKey != "":
		k.add("rpki.tls_cert", "missing (tls_key is set)")
	}
	c.RPKI.TLS = cfg
}

// rtrSSH reads [rpki]'s SSH client key and the cache's host key: the
// host key is pinned (no trust on first use).
func (k *checker) rtrSSH(r *schema.RPKI) *ssh.ClientConfig {
	user := r.SSHUser
	if user == "" {
		user = "rpki"
	}
	cfg := &ssh.ClientConfig{User: user}
	if r.SSHKey == "" {
		k.add("rpki.ssh_key", "missing (transport = \"ssh\")")
	} else if ok := k.privateKey("rpki.ssh_key", r.SSHKey); !ok {
		// refused, with its reason
	} else if b, err := os.ReadFile(r.SSHKey); err != nil {
		k.add("rpki.ssh_key", "%v", err)
	} else if signer, err := ssh.ParsePrivateKey(b); err != nil {
		k.add("rpki.ssh_key", "%s: %v", r.SSHKey, err)
	} else {
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
	}
	if r.SSHHostKey == "" {
		k.add("rpki.ssh_host_key", "missing (transport = \"ssh\"): the cache's public host key, as in known_hosts or authorized_keys")
	} else if b, err := os.ReadFile(r.SSHHostKey); err != nil {
		k.add("rpki.ssh_host_key", "%v", err)
	} else if pub, _, _, _, err := ssh.ParseAuthorizedKey(b); err != nil {
		k.add("rpki.ssh_host_key", "%s: %v", r.SSHHostKey, err)
	} else {
		cfg.HostKeyCallback = ssh.FixedHostKey(pub)
	}
	return cfg
}
