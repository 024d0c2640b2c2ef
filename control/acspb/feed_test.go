package acspb

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestChunkMembership: every chunk stays under the limit, carries the
// head, a member too large for one chunk is cut into continued entries,
// and the chunks together hold every member, prefix and replace entry in
// order.
func TestChunkMembership(t *testing.T) {
	const limit = 2 << 10
	var members []*FeedMember
	total := 0
	for i := range 50 {
		m := &FeedMember{Asn: uint32(64500 + i), Local: i == 0, TagPeer: uint32(64500 + i), ValidatePeer: uint32(64500 + i)}
		n := i * i // 0 … 2,401 prefixes: the largest members span chunks
		for j := range n {
			addr := []byte{10, byte(i), byte(j >> 8), byte(j)}
			if j%3 == 0 {
				addr = []byte{0x20, 0x01, 0x0d, 0xb8, byte(i), byte(j >> 8), byte(j), 0, 0, 0, 0, 0, 0, 0, 0, 0}
			}
			m.Prefixes = append(m.Prefixes, &Prefix{Addr: addr, Bits: uint32(8 * len(addr))})
		}
		total += n
		members = append(members, m)
	}
	var replace []*FeedReplace
	for i := range 200 {
		replace = append(replace, &FeedReplace{SrcAsn: uint32(64500 + i%50), DstAsn: uint32(64500 + i/50), InPeer: 1, OutPeer: 2})
	}
	head := MembershipHead{Version: 7, T0: 100, PeriodSeconds: 60, LocalASN: 64500}
	chunks := ChunkMembership(head, members, replace, limit)
	if len(chunks) < 20 {
		t.Fatalf("%d chunks", len(chunks))
	}
	var got []*FeedMember
	var gotReplace []*FeedReplace
	for i, c := range chunks {
		if n := proto.Size(c); n > limit {
			t.Fatalf("chunk %d: %d octets over %d", i, n, limit)
		}
		if c.Index != uint32(i) || c.Count != uint32(len(chunks)) || c.Version != 7 || c.T0 != 100 || c.PeriodSeconds != 60 || c.LocalAsn != 64500 {
			t.Fatalf("chunk %d head %v", i, c)
		}
		for _, m := range c.Members {
			if m.Continued {
				last := got[len(got)-1]
				if last.Asn != m.Asn || last.Local != m.Local || last.TagPeer != m.TagPeer {
					t.Fatalf("chunk %d: continued AS%d after AS%d", i, m.Asn, last.Asn)
				}
				last.Prefixes = append(last.Prefixes[:len(last.Prefixes):len(last.Prefixes)], m.Prefixes...)
				continue
			}
			got = append(got, &FeedMember{Asn: m.Asn, Local: m.Local, TagPeer: m.TagPeer, ValidatePeer: m.ValidatePeer, Prefixes: m.Prefixes})
		}
		gotReplace = append(gotReplace, c.Replace...)
	}
	if len(got) != len(members) || len(gotReplace) != len(replace) {
		t.Fatalf("%d members, %d replace entries", len(got), len(gotReplace))
	}
	n := 0
	for i, m := range got {
		if !proto.Equal(m, members[i]) {
			t.Fatalf("member %d differs", i)
		}
		n += len(m.Prefixes)
	}
	for i := range replace {
		if gotReplace[i] != replace[i] {
			t.Fatalf("replace %d differs", i)
		}
	}
	if n != total {
		t.Fatalf("%d prefixes, want %d", n, total)
	}
	// Nothing to send is still one chunk, and a limit below the minimum
	// is the default.
	if c := ChunkMembership(head, nil, nil, 0); len(c) != 1 || c[0].Count != 1 {
		t.Fatalf("empty: %v", c)
	}
	if c := ChunkMembership(head, members, nil, 10); len(c) != 1 {
		t.Fatalf("%d chunks at the default limit", len(c))
	}
}
