package membership

import (
	"math/rand"
	"reflect"
	"testing"
)

// figure1 is the PSAV draft's Figure 1: AS1 and AS2 in community 1 (AS2 its
// border), AS3 and AS4 in the parent community 0 (AS3 the parent peer).
func figure1(t *testing.T) (*Tree, ASCNOf) {
	t.Helper()
	tr, err := NewTree([]Community{{ASCN: 1, Parent: 0, Border: 2, ParentPeer: 3}})
	if err != nil {
		t.Fatal(err)
	}
	of := mapOf(map[uint32]uint32{1: 1, 2: 1, 3: 0, 4: 0})
	return tr, of
}

func mapOf(m map[uint32]uint32) ASCNOf {
	return func(asn uint32) (uint32, bool) { c, ok := m[asn]; return c, ok }
}

func TestTreeFigure1(t *testing.T) {
	tr, of := figure1(t)
	cases := []struct {
		s, d uint32
		want []uint32
	}{
		{1, 4, []uint32{1, 2, 3, 4}}, // the draft's walk: <AS1,AS2>, <AS2,AS3>, <AS3,AS4>
		{4, 1, []uint32{4, 3, 2, 1}},
		{1, 2, []uint32{1, 2}},
		{2, 3, []uint32{2, 3}},
		{1, 3, []uint32{1, 2, 3}},
		{2, 4, []uint32{2, 3, 4}},
		{3, 4, []uint32{3, 4}},
		{1, 9, nil}, // not a member
	}
	for _, c := range cases {
		if got := tr.Path(c.s, c.d, of); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Path(%d, %d) = %v, want %v", c.s, c.d, got, c.want)
		}
	}
	if !tr.Adjacent(2, 3, of) || !tr.Adjacent(1, 2, of) || tr.Adjacent(1, 3, of) || tr.Adjacent(1, 4, of) {
		t.Error("adjacency wrong")
	}

	h := tr.HopsFor(2, []uint32{1, 2, 3, 4}, of)
	if want := map[uint32]uint32{1: 1, 3: 3, 4: 3}; !reflect.DeepEqual(h.Next, want) {
		t.Errorf("AS2 next %v, want %v", h.Next, want)
	}
	wantR := map[[2]uint32][2]uint32{{1, 3}: {1, 3}, {1, 4}: {1, 3}, {3, 1}: {3, 1}, {4, 1}: {3, 1}}
	if !reflect.DeepEqual(h.Replace, wantR) {
		t.Errorf("AS2 replace %v, want %v", h.Replace, wantR)
	}
	h = tr.HopsFor(3, []uint32{1, 2, 3, 4}, of)
	wantR = map[[2]uint32][2]uint32{{1, 4}: {2, 4}, {2, 4}: {2, 4}, {4, 1}: {4, 2}, {4, 2}: {4, 2}}
	if !reflect.DeepEqual(h.Replace, wantR) {
		t.Errorf("AS3 replace %v, want %v", h.Replace, wantR)
	}
	h = tr.HopsFor(1, []uint32{1, 2, 3, 4}, of)
	if h.Replace != nil {
		t.Errorf("AS1 is no junction, has replace %v", h.Replace)
	}
	if want := map[uint32]uint32{2: 2, 3: 2, 4: 2}; !reflect.DeepEqual(h.Next, want) {
		t.Errorf("AS1 next %v, want %v", h.Next, want)
	}
}

func TestTreeFlat(t *testing.T) {
	tr, err := NewTree(nil)
	if err != nil {
		t.Fatal(err)
	}
	of := mapOf(map[uint32]uint32{1: 0, 2: 0, 3: 0})
	if p := tr.Path(1, 3, of); !reflect.DeepEqual(p, []uint32{1, 3}) {
		t.Errorf("flat path %v", p)
	}
	var nilTree *Tree
	if p := nilTree.Path(3, 2, of); !reflect.DeepEqual(p, []uint32{3, 2}) {
		t.Errorf("nil tree path %v", p)
	}
	// A record claiming a community the tree does not know has no path.
	of = mapOf(map[uint32]uint32{1: 0, 2: 7})
	if p := tr.Path(1, 2, of); p != nil {
		t.Errorf("unknown community: path %v", p)
	}
}

// A border whose record says another community breaks the path: the tree
// and the membership disagree, and guessing would tag with a key nobody
// validates.
func TestTreeBorderNotMember(t *testing.T) {
	tr, _ := figure1(t)
	of := mapOf(map[uint32]uint32{1: 1, 2: 0, 3: 0, 4: 0}) // AS2 moved to the root
	if p := tr.Path(1, 4, of); p != nil {
		t.Errorf("path %v through a border outside its community", p)
	}
	of = mapOf(map[uint32]uint32{1: 1, 2: 1, 4: 0}) // parent peer AS3 gone
	if p := tr.Path(1, 4, of); p != nil {
		t.Errorf("path %v through a missing parent peer", p)
	}
}

func TestNewTreeRefuses(t *testing.T) {
	for name, cs := range map[string][]Community{
		"root entry":    {{ASCN: 0, Border: 1, ParentPeer: 2}},
		"duplicate":     {{ASCN: 1, Border: 1, ParentPeer: 2}, {ASCN: 1, Border: 1, ParentPeer: 2}},
		"own parent":    {{ASCN: 1, Parent: 1, Border: 1, ParentPeer: 2}},
		"no border":     {{ASCN: 1, ParentPeer: 2}},
		"no peer":       {{ASCN: 1, Border: 2}},
		"same AS":       {{ASCN: 1, Border: 2, ParentPeer: 2}},
		"unknown":       {{ASCN: 1, Parent: 5, Border: 1, ParentPeer: 2}},
		"cycle":         {{ASCN: 1, Parent: 2, Border: 1, ParentPeer: 2}, {ASCN: 2, Parent: 1, Border: 3, ParentPeer: 4}},
		"cycle of one+": {{ASCN: 1, Parent: 2, Border: 1, ParentPeer: 2}, {ASCN: 2, Parent: 3, Border: 3, ParentPeer: 4}, {ASCN: 3, Parent: 1, Border: 5, ParentPeer: 6}},
	} {
		if _, err := NewTree(cs); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestTreeMatchesShortestPath checks Path against an independent model on
// random hierarchies: the graph whose edges are the keys docs/wire.md §2.6 says
// exist (every two ASes of one community, each border with its parent
// peer). Communities form a tree of cliques, so the shortest path in that
// graph is unique and is the PSAV path.
func TestTreeMatchesShortestPath(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for round := 0; round < 200; round++ {
		ncomm := 1 + rng.Intn(6)
		members := map[uint32][]uint32{} // ascn → ASNs
		of := map[uint32]uint32{}
		next := uint32(1)
		for c := 0; c < ncomm; c++ {
			for k := 0; k < 2+rng.Intn(3); k++ {
				members[uint32(c)] = append(members[uint32(c)], next)
				of[next] = uint32(c)
				next++
			}
		}
		var cs []Community
		for c := 1; c < ncomm; c++ {
			parent := uint32(rng.Intn(c))
			ms, ps := members[uint32(c)], members[parent]
			cs = append(cs, Community{ASCN: uint32(c), Parent: parent,
				Border: ms[rng.Intn(len(ms))], ParentPeer: ps[rng.Intn(len(ps))]})
		}
		tr, err := NewTree(cs)
		if err != nil {
			t.Fatal(err)
		}
		adj := map[uint32]map[uint32]bool{}
		link := func(a, b uint32) {
			if adj[a] == nil {
				adj[a] = map[uint32]bool{}
			}
			if adj[b] == nil {
				adj[b] = map[uint32]bool{}
			}
			adj[a][b], adj[b][a] = true, true
		}
		for _, ms := range members {
			for _, a := range ms {
				for _, b := range ms {
					if a != b {
						link(a, b)
					}
				}
			}
		}
		for _, c := range cs {
			link(c.Border, c.ParentPeer)
		}
		for s := uint32(1); s < next; s++ {
			for d := uint32(1); d < next; d++ {
				if s == d {
					continue
				}
				want := bfs(adj, s, d)
				got := tr.Path(s, d, mapOf(of))
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("round %d: Path(%d,%d) = %v, shortest path %v (tree %+v)", round, s, d, got, want, cs)
				}
			}
		}
	}
}

func bfs(adj map[uint32]map[uint32]bool, s, d uint32) []uint32 {
	prev := map[uint32]uint32{s: s}
	q := []uint32{s}
	for len(q) > 0 {
		a := q[0]
		q = q[1:]
		for b := range adj[a] {
			if _, seen := prev[b]; !seen {
				prev[b] = a
				q = append(q, b)
			}
		}
	}
	if _, ok := prev[d]; !ok {
		return nil
	}
	var p []uint32
	for a := d; a != s; a = prev[a] {
		p = append([]uint32{a}, p...)
	}
	return append([]uint32{s}, p...)
}
