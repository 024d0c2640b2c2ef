package psavref_test

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/psavd/psavd/engine/header"
	"github.com/psavd/psavd/internal/psavref"
)

// Frames from engine/testdata/vectors.py, a third implementation (Python)
// of docs/wire.md §2.3–2.5: S(e0) = 00 … 1f, e0 = 29000000, tagged in epoch
// e0+5 by AS 65001 (198.51.100.0/24, 2001:db8:1::/48) for AS 65002. The
// same frames are the replay vectors of cmd/psavd.
const (
	vecS0    = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	vecE0    = 29000000
	vecV4In  = "020000000002020000000001080045000025123400004011024cc633640acb00710a1092003500110000707361762074657374"
	vecV4Out = "020000000002020000000001080049000035123400004011496cc633640acb00710a9e0e7100c6abe194f26dc4f8451801011092003500110000707361762074657374"
	vecV6In  = "02000000000202000000000186dd600000000011114020010db800010000000000000000001020010db80002000000000000000000101092003500110000707361762074657374"
	vecV6Out = "02000000000202000000000186dd6000000000213c4020010db800010000000000000000001020010db800020000000000000000001011013b0c7100e50148a618b4dfcc45301092003500110000707361762074657374"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVectors(t *testing.T) {
	s0, err := psavref.ParseState(vecS0)
	if err != nil {
		t.Fatal(err)
	}
	key, err := psavref.Key(s0, vecE0, vecE0+5)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		name     string
		in, out  string
		pfx      uint8
		src, dst string
	}{
		{"ipv4", vecV4In, vecV4Out, 24, "198.51.100.10", "203.0.113.10"},
		{"ipv6", vecV6In, vecV6Out, 48, "2001:db8:1::10", "2001:db8:2::10"},
	} {
		in, out := unhex(t, v.in), unhex(t, v.out)
		got, err := psavref.TagFrame(in, key, vecE0+5, v.pfx)
		if err != nil || !bytes.Equal(got, out) {
			t.Fatalf("%s: TagFrame %v\n got % x\nwant % x", v.name, err, got, out)
		}
		ti, err := psavref.Find(out[header.EthernetHeaderLen:])
		if err != nil || !ti.Alone || ti.PrefixLen != v.pfx || ti.Epoch != (vecE0+5)&0xff || ti.FirstOctet != 0x10 {
			t.Fatalf("%s: Find %+v %v", v.name, ti, err)
		}
		src, dst := netip.MustParseAddr(v.src), netip.MustParseAddr(v.dst)
		if want := psavref.Tag(key, src, dst, ti.FirstOctet, v.pfx); ti.Tag != want {
			t.Fatalf("%s: tag %016x, Tag computes %016x", v.name, ti.Tag, want)
		}
		s, err := psavref.Strip(out[header.EthernetHeaderLen:])
		if err != nil || !bytes.Equal(s, in[header.EthernetHeaderLen:]) {
			t.Fatalf("%s: Strip %v\n got % x\nwant % x", v.name, err, s, in[header.EthernetHeaderLen:])
		}
	}
	if _, err := psavref.Key(s0, vecE0, vecE0-1); err == nil {
		t.Fatal("key for an epoch before e0")
	}
	if _, err := psavref.ParseState("00"); err == nil {
		t.Fatal("short s0 accepted")
	}
}

// Tags placed by the builders the tests use are found and stripped; a tag
// that shares a Destination Options header is found but not stripped.
func TestFindStripBuilt(t *testing.T) {
	src, dst := netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("203.0.113.10")
	tag := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	udp := header.AppendUDP(nil, src, dst, 1, 2, []byte("x"))
	f := header.IPv4Fields{TTL: 64, Protocol: header.ProtoUDP, Src: src, Dst: dst, Options: []byte{1, 1, 1, 1}}
	plain := header.AppendIPv4(nil, f, udp)
	f.Options = append(f.Options, psavref.IPv4Option(tag, 9, 24)...)
	tagged := header.AppendIPv4(nil, f, udp)
	ti, err := psavref.Find(tagged)
	if err != nil || !ti.Alone || ti.At != 24 || ti.Tag != 0x0102030405060708 || ti.Epoch != 9 || ti.PrefixLen != 24 || ti.FirstOctet != 0 {
		t.Fatalf("IPv4: %+v %v", ti, err)
	}
	if s, err := psavref.Strip(tagged); err != nil || !bytes.Equal(s, plain) {
		t.Fatalf("IPv4 strip: %v\n got % x\nwant % x", err, s, plain)
	}

	s6, d6 := netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:2::10")
	hbh := header.IPv6ExtHeader{Type: header.ProtoHopByHop, Body: []byte{1, 4, 0, 0, 0, 0}}
	f6 := header.IPv6Fields{HopLimit: 64, NextHeader: header.ProtoICMPv6, Src: s6, Dst: d6, Ext: []header.IPv6ExtHeader{hbh}}
	echo := header.AppendICMPEcho(nil, s6, d6, 1, 1, nil)
	plain6 := header.AppendIPv6(nil, f6, echo)
	f6.Ext = append(f6.Ext, psavref.IPv6DestOpts(tag, 1, 48))
	tagged6 := header.AppendIPv6(nil, f6, echo)
	ti, err = psavref.Find(tagged6)
	if err != nil || !ti.Alone || ti.At != 48 || ti.FirstOctet != header.ICMPv6EchoRequest || ti.PrefixLen != 48 {
		t.Fatalf("IPv6: %+v %v", ti, err)
	}
	if s, err := psavref.Strip(tagged6); err != nil || !bytes.Equal(s, plain6) {
		t.Fatalf("IPv6 strip: %v\n got % x\nwant % x", err, s, plain6)
	}

	// The option appended to an existing Destination Options header.
	shared := header.IPv6ExtHeader{Type: header.ProtoDestOpts, Body: append([]byte{1, 4, 0, 0, 0, 0, 1, 0}, psavref.IPv6DestOpts(tag, 1, 48).Body...)}
	f6.Ext = []header.IPv6ExtHeader{shared}
	if ti, err := psavref.Find(header.AppendIPv6(nil, f6, echo)); err != nil || ti.Alone {
		t.Fatalf("shared header: %+v %v", ti, err)
	}
	if _, err := psavref.Strip(header.AppendIPv6(nil, f6, echo)); err == nil {
		t.Fatal("a shared header stripped")
	}

	// Two tags, none, a wrong TagLen/AI.
	f.Options = append(psavref.IPv4Option(tag, 9, 24), psavref.IPv4Option(tag, 9, 24)...)
	if _, err := psavref.Find(header.AppendIPv4(nil, f, udp)); err == nil {
		t.Fatal("two tags accepted")
	}
	if _, err := psavref.Find(plain); err == nil {
		t.Fatal("no tag accepted")
	}
	o := psavref.IPv4Option(tag, 9, 24)
	o[2] = 0x72
	f.Options = o
	if _, err := psavref.Find(header.AppendIPv4(nil, f, udp)); err == nil {
		t.Fatal("TagLen/AI 7/2 accepted")
	}
}

// Find and Strip read packets off the wire: they must not panic on any.
func FuzzFindStrip(f *testing.F) {
	f.Add(unhex(f, vecV4Out)[header.EthernetHeaderLen:])
	f.Add(unhex(f, vecV6Out)[header.EthernetHeaderLen:])
	f.Add([]byte{0x46})
	f.Fuzz(func(t *testing.T, p []byte) {
		if _, err := psavref.Find(p); err != nil {
			return
		}
		_, _ = psavref.Strip(p)
	})
}
