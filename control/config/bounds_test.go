package config

import (
	"errors"
	"strings"
	"testing"
)

// wantProblem fails unless text is refused with a problem at exactly key
// whose reason contains reason.
func wantProblem(t *testing.T, text, key, reason string) {
	t.Helper()
	_, err := Parse("b.toml", []byte(text))
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("%s: want Problems, got %v", key, err)
	}
	for _, p := range ps {
		if p.File == "b.toml" && p.Key == key && strings.Contains(p.Reason, reason) {
			return
		}
	}
	t.Fatalf("no problem with key %q and reason %q in:\n%v", key, reason, err)
}

// edit replaces from by to in base, failing when from is not there.
func edit(t *testing.T, base, from, to string) string {
	t.Helper()
	if !strings.Contains(base, from) {
		t.Fatalf("edit %q does not apply", from)
	}
	return strings.Replace(base, from, to, 1)
}

// An explicit value is never replaced by the default: every defaulted key
// written as zero (or "") is refused at its key, while its absence takes
// the default (the *Defaults tests).
func TestExplicitZerosRefused(t *testing.T) {
	cert, key, _ := adotFiles(t)
	acs := acsOnly(t, "[[acs.community]]\nascn = 0\n"+key0+"\n")
	psav := "[psav]\nasn = 65001"
	for _, c := range []struct{ base, from, to, key, reason string }{
		{good, psav, psav + "\nepoch_seconds = 0", "psav.epoch_seconds", "must be at least 1, is 0"},
		{good, psav, "[engine]\nforwarding = \"\"\n" + psav, "engine.forwarding", `"" is not one of`},
		{good, psav, "[engine]\nbatch = 0\n" + psav, "engine.batch", "must be 1 … 1024, is 0"},
		{good, psav, "[engine]\nspoofed_inside = \"\"\n" + psav, "engine.spoofed_inside", "not one of"},
		{good, psav, "[engine]\nno_room = \"\"\n" + psav, "engine.no_room", "not one of"},
		{good, psav, "[engine]\nframes = 0\n" + psav, "engine.frames", "is 0"},
		{good, psav, "[engine]\nring_size = 0\n" + psav, "engine.ring_size", "is 0"},
		{good, psav, "[engine]\ncpus = []\n" + psav, "engine.cpus", "empty"},
		{good, psav, "[engine]\nbusy_poll = \"0s\"\n" + psav, "engine.busy_poll", "not a positive duration"},
		{good, psav, "[engine]\nbusy_poll_budget = 16\n" + psav, "engine.busy_poll_budget", "without engine.busy_poll"},
		{good, `role = "egress"`, "role = \"egress\"\nxdp_mode = \"\"", "port[1].xdp_mode", `"" is not one of`},
		{good, `role = "egress"`, "role = \"egress\"\nencap = \"\"", "port[1].encap", `"" is not one of`},
		{good, `role = "egress"`, "role = \"egress\"\nmtu = 0", "port[1].mtu", "must be 1280 … 1906, is 0"},
		{good, `role = "egress"`, "role = \"egress\"\nqueues = []", "port[1].queues", "empty"},
		{acs, "membership_dir", "heartbeat = \"0s\"\nmembership_dir", "acs.heartbeat", "not a positive duration"},
		{acs, "membership_dir", "heartbeat = \"\"\nmembership_dir", "acs.heartbeat", "not a positive duration"},
		{acs, "membership_dir", "dead_after = 0\nmembership_dir", "acs.dead_after", "at least 1"},
		{good, "", "\n[capture]\ndir = \"/tmp\"\nevery = 0", "capture.every", "must be 1 … 1000000, is 0"},
		{good, "", "\n[capture]\ndir = \"/tmp\"\nsnap = 0", "capture.snap", "is 0"},
		{good, "", "\n[capture]\ndir = \"/tmp\"\nmax_bytes = 0", "capture.max_bytes", "at least 4096, is 0"},
		{good, psav, "[log]\nlevel = \"\"\n" + psav, "log.level", `"" is not one of`},
		{good, psav, "[log]\nformat = \"\"\n" + psav, "log.format", `"" is not one of`},
		{goodLISP, "[lisp]", "[lisp]\ncontrol_listen = \"\"", "lisp.control_listen", "not host:port"},
		{goodLISP, "[lisp]", "[lisp]\non_miss = \"\"", "lisp.on_miss", "not one of"},
		{goodLISP, "[lisp]", "[lisp]\ntoo_big = \"\"", "lisp.too_big", "not one of"},
		{goodLISP, "[lisp]", "[lisp]\nicmp_rate = 0", "lisp.icmp_rate", "is 0"},
		{good + adotGood(cert, key), "min_tls = \"1.2\"", "min_tls = \"\"", "adot.min_tls", "not one of"},
		{good + adotGood(cert, key), "attempts = 2", "attempts = 0", "adot.attempts", "must be 1 … 10, is 0"},
		{good + adotGood(cert, key), "max_conns_per_server = 2", "max_conns_per_server = 0", "adot.max_conns_per_server", "is 0"},
		{good + adotGood(cert, key), "query_timeout = \"1s\"", "query_timeout = \"\"", "adot.query_timeout", "not a positive duration"},
		{good + adotGood(cert, key), "ttl = 60", "ttl = 0", "adot.server.ttl", "is 0"},
		{good + adotGood(cert, key), "max_conns = 100", "max_conns = 0", "adot.server.max_conns", "is 0"},
		{good + adotGood(cert, key), "max_queries_per_conn = 1000", "max_queries_per_conn = 0", "adot.server.max_queries_per_conn", "is 0"},
		{good + adotGood(cert, key), "ticket_rotation = \"30m\"", "ticket_rotation = \"\"", "adot.server.ticket_rotation", "not a positive duration"},
		{decentPush, "[lisp.decent]\n", "[lisp.decent]\ncontrol_port = 0\n", "lisp.decent.control_port", "not a UDP port"},
		{decentPush, "[lisp.decent]\n", "[lisp.decent]\ndata_port = 0\n", "lisp.decent.data_port", "not a UDP port"},
		{decentPush, "[lisp.decent]\n", "[lisp.decent]\nmulticast_ttl = 0\n", "lisp.decent.multicast_ttl", "is 0"},
		{decentPush, "[lisp.decent]\n", "[lisp.decent]\ntransport = \"\"\n", "lisp.decent.transport", "not one of"},
		{decentPush, `refresh_interval = "10s"`, `refresh_interval = "0s"`, "lisp.decent.refresh_interval", "not a positive duration"},
		{decentPush, "[lisp.decent]\n", "[lisp.decent]\nlookup_interval = \"\"\n", "lisp.decent.lookup_interval", "not a positive duration"},
		{decentPull, `hash_mode = "draft"`, `hash_mode = ""`, "lisp.decent.hash_mode", "not one of"},
	} {
		t.Run(c.key, func(t *testing.T) {
			text := c.base + c.to
			if c.from != "" {
				text = edit(t, c.base, c.from, c.to)
			}
			wantProblem(t, text, c.key, c.reason)
		})
	}
}

// Values that would crash a role or make no sense are refused.
func TestBounds(t *testing.T) {
	cert, key, _ := adotFiles(t)
	acs := acsOnly(t, "[[acs.community]]\nascn = 0\n"+key0+"\n")
	psav := "[psav]\nasn = 65001"
	for _, c := range []struct{ name, base, from, to, key, reason string }{
		{"epoch over a day", good, psav, psav + "\nepoch_seconds = 86401", "psav.epoch_seconds", "at most 86400"},
		{"t0 huge", good, psav, psav + "\nt0 = 1099511627776", "psav.t0", "at most"},
		{"start epoch huge", good, "start_epoch = 1", "start_epoch = 1099511627776", "psav.static_peer[0].start_epoch", "at most"},
		{"heartbeat 1ns", acs, "membership_dir", "heartbeat = \"1ns\"\nmembership_dir", "acs.heartbeat", "must be 100ms … 1m, is 1ns"},
		{"heartbeat 2m", acs, "membership_dir", "heartbeat = \"2m\"\nmembership_dir", "acs.heartbeat", "must be 100ms … 1m, is 2m"},
		{"default heartbeat a whole epoch", acs, "asn = 65002", "asn = 65002\nepoch_seconds = 1", "acs.heartbeat", "1s is not shorter than an epoch"},
		{"dead_after huge", acs, "membership_dir", "dead_after = 1000\nmembership_dir", "acs.dead_after", "at most 100"},
		{"max_connections huge", acs, "membership_dir", "max_connections = 100000\nmembership_dir", "acs.max_connections", "1 … 65536"},
		{"per source above total", acs, "membership_dir", "max_connections = 10\nmax_connections_per_source = 11\nmembership_dir", "acs.max_connections_per_source", "1 … max_connections (10)"},
		{"handshake_timeout 1h", acs, "membership_dir", "handshake_timeout = \"1h\"\nmembership_dir", "acs.handshake_timeout", "must be 100ms … 1m"},
		{"hello_timeout 1ns", acs, "membership_dir", "hello_timeout = \"1ns\"\nmembership_dir", "acs.hello_timeout", "must be 100ms … 1m"},
		{"batch", good, psav, "[engine]\nbatch = 2048\n" + psav, "engine.batch", "1 … 1024"},
		{"frames", good, psav, "[engine]\nframes = 2097152\n" + psav, "engine.frames", "1048576"},
		{"ring", good, psav, "[engine]\nring_size = 131072\n" + psav, "engine.ring_size", "65536"},
		{"busy poll 2s", good, psav, "[engine]\nbusy_poll = \"2s\"\n" + psav, "engine.busy_poll", "must be 1µs … 1s"},
		{"busy poll budget", good, psav, "[engine]\nbusy_poll = \"50us\"\nbusy_poll_budget = 70000\n" + psav, "engine.busy_poll_budget", "1 … 65535"},
		{"cpu", good, psav, "[engine]\ncpus = [0, 5000]\n" + psav, "engine.cpus[1]", "below 1024"},
		{"queue", good, `role = "egress"`, "role = \"egress\"\nqueues = [70000]", "port[1].queues[0]", "at most 4095"},
		{"mac of 8 octets", goodLISP, `next_hop_mac = "02:00:00:00:00:01"`, `next_hop_mac = "02:00:00:00:00:01:02:03"`, "route[0].next_hop_mac", "not a MAC"},
		{"capture every", good, "", "\n[capture]\ndir = \"/tmp\"\nevery = 10000000", "capture.every", "1 … 1000000"},
		{"capture snap", good, "", "\n[capture]\ndir = \"/tmp\"\nsnap = 70000", "capture.snap", "64 … 65535"},
		{"capture bytes", good, "", "\n[capture]\ndir = \"/tmp\"\nmax_bytes = 1125899906842624", "capture.max_bytes", "at most"},
		{"capture keep", good, "", "\n[capture]\ndir = \"/tmp\"\nkeep = 5000", "capture.keep", "at most 1000"},
		{"icmp rate", goodLISP, "[lisp]", "[lisp]\nicmp_rate = 10000000", "lisp.icmp_rate", "1 … 1000000"},
		{"priority", goodLISP, "priority = 1", "priority = 256", "lisp.database[0].rlocs[0].priority", "0 … 255"},
		{"adot attempts", good + adotGood(cert, key), "attempts = 2", "attempts = 100", "adot.attempts", "1 … 10"},
		{"adot timeout", good + adotGood(cert, key), "query_timeout = \"1s\"", "query_timeout = \"1h\"", "adot.query_timeout", "1ms … 1m"},
		{"adot max_ttl", good + adotGood(cert, key), "max_ttl = \"10m\"", "max_ttl = \"10000h\"", "adot.max_ttl", "168h"},
		{"adot server ttl", good + adotGood(cert, key), "ttl = 60", "ttl = 4294967295", "adot.server.ttl", "2147483647"},
		{"adot rotation", good + adotGood(cert, key), "ticket_rotation = \"30m\"", "ticket_rotation = \"9000h\"", "adot.server.ticket_rotation", "168h"},
		{"decent refresh", decentPush, `refresh_interval = "10s"`, `refresh_interval = "2h"`, "lisp.decent.refresh_interval", "1s … 1h"},
		{"decent ttl", decentPush, `registration_ttl = "30s"`, `registration_ttl = "48h"`, "lisp.decent.registration_ttl", "1s … 24h"},
		{"decent multicast ttl", decentPush, "[lisp.decent]\n", "[lisp.decent]\nmulticast_ttl = 256\n", "lisp.decent.multicast_ttl", "1 … 255"},
		{"decent modulus", decentPull, "modulus = 4", "modulus = 8589934592", "lisp.decent.modulus", "at most"},
		{"decent mask", decentPull, "hash_mask = 8", "hash_mask = 1000", "lisp.decent.hash_mask", "at most 255"},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := c.base + c.to
			if c.from != "" {
				text = edit(t, c.base, c.from, c.to)
			}
			wantProblem(t, text, c.key, c.reason)
		})
	}
}
