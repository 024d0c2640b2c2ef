package membership

import (
	"fmt"
	"sort"
)

// Community is one node of the community tree (docs/wire.md §2.6). ASCN 0 is the
// root, the top-level alliance. Every other community hangs under a parent
// and is joined to it by one key: between its Border AS (a member of this
// community) and ParentPeer (a member of the parent community) — the link
// <AS2, AS3> of the PSAV draft's Figure 1.
type Community struct {
	ASCN       uint32
	Parent     uint32
	Border     uint32 // ASN, member of ASCN
	ParentPeer uint32 // ASN, member of Parent
}

// Tree is the community hierarchy, as configured (the same on every ACS: it
// decides who tags for whom, so two ACS with different trees would drop each
// other's traffic). A tree with only the root is the flat alliance.
type Tree struct {
	comm map[uint32]Community
}

// MaxTreeDepth bounds the number of levels below the root.
const MaxTreeDepth = 16

// NewTree checks and builds a tree: ASCN 0 needs no entry and has no
// parent; every other community names an existing parent, a border and a
// parent peer, and the parents lead to the root without a cycle.
func NewTree(cs []Community) (*Tree, error) {
	t := &Tree{comm: make(map[uint32]Community, len(cs))}
	for _, c := range cs {
		if c.ASCN == 0 {
			return nil, fmt.Errorf("community 0 is the root: it has no parent, border or parent peer")
		}
		if _, dup := t.comm[c.ASCN]; dup {
			return nil, fmt.Errorf("community %d given twice", c.ASCN)
		}
		if c.Parent == c.ASCN {
			return nil, fmt.Errorf("community %d is its own parent", c.ASCN)
		}
		if c.Border == 0 || c.ParentPeer == 0 {
			return nil, fmt.Errorf("community %d: border and parent_peer are both required (the ASes that hold the key to the parent community)", c.ASCN)
		}
		if c.Border == c.ParentPeer {
			return nil, fmt.Errorf("community %d: border and parent_peer are the same AS %d (an AS belongs to one community)", c.ASCN, c.Border)
		}
		t.comm[c.ASCN] = c
	}
	for _, c := range cs {
		depth := 0
		for a := c.ASCN; a != 0; a = t.comm[a].Parent {
			if _, ok := t.comm[a]; !ok {
				return nil, fmt.Errorf("community %d: parent %d is not configured", c.ASCN, a)
			}
			if depth++; depth > MaxTreeDepth {
				return nil, fmt.Errorf("community %d: parents form a cycle or pass %d levels", c.ASCN, MaxTreeDepth)
			}
		}
	}
	return t, nil
}

// Communities lists the configured communities (not the root), by ASCN.
func (t *Tree) Communities() []Community {
	if t == nil {
		return nil
	}
	out := make([]Community, 0, len(t.comm))
	for _, c := range t.comm {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ASCN < out[j].ASCN })
	return out
}

// chain returns ascn and its ancestors up to the root (ascn first, 0 last).
func (t *Tree) chain(ascn uint32) ([]uint32, bool) {
	out := []uint32{ascn}
	var comm map[uint32]Community
	if t != nil {
		comm = t.comm
	}
	for a := ascn; a != 0; {
		c, ok := comm[a]
		if !ok || len(out) > MaxTreeDepth+1 {
			return nil, false
		}
		a = c.Parent
		out = append(out, a)
	}
	return out, true
}

// ASCNOf tells which community an AS is in (from the membership records);
// ok is false for an AS that is not a member.
type ASCNOf func(asn uint32) (ascn uint32, ok bool)

// Path is the sequence of PSAV hops from src to dst (both ends included):
// the ASes that tag, replace and validate a packet from src to dst. Inside
// one community it is [src, dst]; across communities it climbs from src's
// community through each border and parent peer to the lowest common
// community and descends the same way to dst. It is symmetric: Path(d, s)
// is Path(s, d) reversed. It is nil when there is no path: an end or a
// border on the way is not a member of the community the tree says, or a
// community is not in the tree.
func (t *Tree) Path(src, dst uint32, of ASCNOf) []uint32 {
	cs, ok1 := of(src)
	cd, ok2 := of(dst)
	if !ok1 || !ok2 {
		return nil
	}
	if src == dst {
		return []uint32{src}
	}
	up, ok1 := t.chain(cs)
	down, ok2 := t.chain(cd)
	if !ok1 || !ok2 {
		return nil
	}
	// Lowest common community: the first of src's chain that is in dst's.
	inDown := make(map[uint32]int, len(down))
	for i, a := range down {
		inDown[a] = i
	}
	li, lj := -1, -1
	for i, a := range up {
		if j, ok := inDown[a]; ok {
			li, lj = i, j
			break
		}
	}
	if li < 0 {
		return nil // unreachable: both chains end at 0
	}
	climb := func(start uint32, chain []uint32) ([]uint32, bool) {
		hops := []uint32{start}
		for _, a := range chain {
			c := t.comm[a]
			if b, ok := of(c.Border); !ok || b != a {
				return nil, false
			}
			if p, ok := of(c.ParentPeer); !ok || p != c.Parent {
				return nil, false
			}
			hops = append(hops, c.Border, c.ParentPeer)
		}
		return hops, true
	}
	a, ok1 := climb(src, up[:li])
	b, ok2 := climb(dst, down[:lj])
	if !ok1 || !ok2 {
		return nil
	}
	path := make([]uint32, 0, len(a)+len(b))
	for _, h := range a {
		if len(path) == 0 || path[len(path)-1] != h {
			path = append(path, h)
		}
	}
	for i := len(b) - 1; i >= 0; i-- {
		if path[len(path)-1] != b[i] {
			path = append(path, b[i])
		}
	}
	return path
}

// Adjacent reports whether a and b hold a key with each other in the tree:
// both in one community, or the border of a community and its parent peer.
func (t *Tree) Adjacent(a, b uint32, of ASCNOf) bool {
	if a == b {
		return false
	}
	p := t.Path(a, b, of)
	return len(p) == 2
}

// Hops is what one AS needs from the tree to build its ABRs' tables
// (docs/wire.md §2.6): for every other member, the PSAV hop toward it (which is
// also the hop a packet from it arrives from, the path being symmetric),
// and the replace entries for the pairs whose path passes through it.
type Hops struct {
	Next    map[uint32]uint32       // member ASN → neighbour ASN toward it
	Replace map[[2]uint32][2]uint32 // (src ASN, dst ASN) → (in neighbour, out neighbour)
}

// HopsFor computes local's Hops over the given members. Replace entries
// exist only where local stands strictly inside a path, which happens only
// to the borders and parent peers of communities; other ASes get none.
func (t *Tree) HopsFor(local uint32, members []uint32, of ASCNOf) Hops {
	h := Hops{Next: make(map[uint32]uint32, len(members))}
	for _, m := range members {
		if m == local {
			continue
		}
		if p := t.Path(local, m, of); len(p) >= 2 {
			h.Next[m] = p[1]
		}
	}
	if !t.isJunction(local) {
		return h
	}
	h.Replace = make(map[[2]uint32][2]uint32)
	for _, s := range members {
		if s == local {
			continue
		}
		for _, d := range members {
			if d == local || d == s {
				continue
			}
			p := t.Path(s, d, of)
			for i := 1; i+1 < len(p); i++ {
				if p[i] == local {
					h.Replace[[2]uint32{s, d}] = [2]uint32{p[i-1], p[i+1]}
					break
				}
			}
		}
	}
	return h
}

// isJunction reports whether asn is a border or a parent peer of some
// community: only those can stand inside a path.
func (t *Tree) isJunction(asn uint32) bool {
	if t == nil {
		return false
	}
	for _, c := range t.comm {
		if c.Border == asn || c.ParentPeer == asn {
			return true
		}
	}
	return false
}
