package acspb

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// FeedVersion is the FeedRequest.feed_version of this schema: the feed in
// two parts, MembershipChunk and FeedKeys (docs/wire.md §3.1).
const FeedVersion = 2

// FeedChunkBytes is the size an ACS cuts membership chunks at: a quarter
// of gRPC's default receive limit, so that a chunk never comes near the
// limit an ABR sets (abr.MaxFeedMessage) whatever its prefixes.
const FeedChunkBytes = 1 << 20

// minChunkBytes is the smallest limit ChunkMembership accepts: one prefix
// of the longest form and a member header always fit.
const minChunkBytes = 1 << 10

// chunkHeadMax bounds the encoded size of a chunk's own fields (version,
// index, count, t0, period, local ASN), whatever their values.
const chunkHeadMax = 6 * (1 + 10) // a tag and a varint of at most 10 octets each

// MembershipHead is what every chunk of one membership version repeats.
type MembershipHead struct {
	Version       uint64
	T0            int64
	PeriodSeconds int64
	LocalASN      uint32
}

// ChunkMembership cuts one membership version into chunks of at most
// limit octets each (FeedChunkBytes if limit is smaller than a minimum):
// members in order, a member whose prefixes do not fit continued in the
// next chunk (FeedMember.continued), then the replace entries. There is
// always at least one chunk. The chunks share the prefixes of members (no
// copy): neither may be modified while the chunks are in use.
func ChunkMembership(h MembershipHead, members []*FeedMember, replace []*FeedReplace, limit int) []*MembershipChunk {
	if limit < minChunkBytes {
		limit = FeedChunkBytes
	}
	var out []*MembershipChunk
	cur := &MembershipChunk{}
	size := chunkHeadMax
	flush := func() {
		out = append(out, cur)
		cur = &MembershipChunk{}
		size = chunkHeadMax
	}
	entry := func(tag protowire.Number, n int) int { return protowire.SizeTag(tag) + protowire.SizeBytes(n) }
	head := func(m *FeedMember, continued bool) *FeedMember {
		return &FeedMember{Asn: m.GetAsn(), Local: m.GetLocal(), TagPeer: m.GetTagPeer(), ValidatePeer: m.GetValidatePeer(), Continued: continued}
	}
	for _, m := range members {
		piece := head(m, m.GetContinued())
		psize := proto.Size(piece)
		from := 0 // m.Prefixes[from:i] are in piece
		ps := m.GetPrefixes()
		for i, p := range ps {
			n := entry(3, proto.Size(p))
			if size+entry(7, psize+n) > limit && (i > from || len(cur.Members)+len(cur.Replace) > 0) {
				started := i > from
				if started {
					piece.Prefixes = ps[from:i:i]
					cur.Members = append(cur.Members, piece)
				}
				flush()
				piece = head(m, started || m.GetContinued())
				psize, from = proto.Size(piece), i
			}
			psize += n
		}
		piece.Prefixes = ps[from:len(ps):len(ps)]
		if size+entry(7, psize) > limit && len(cur.Members)+len(cur.Replace) > 0 {
			flush()
		}
		cur.Members = append(cur.Members, piece)
		size += entry(7, psize)
	}
	for _, r := range replace {
		n := entry(8, proto.Size(r))
		if size+n > limit && len(cur.Members)+len(cur.Replace) > 0 {
			flush()
		}
		cur.Replace = append(cur.Replace, r)
		size += n
	}
	if len(cur.Members)+len(cur.Replace) > 0 || len(out) == 0 {
		out = append(out, cur)
	}
	for i, c := range out {
		c.Version, c.Index, c.Count = h.Version, uint32(i), uint32(len(out))
		c.T0, c.PeriodSeconds, c.LocalAsn = h.T0, h.PeriodSeconds, h.LocalASN
	}
	return out
}
