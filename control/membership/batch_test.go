package membership

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestApplyBatch: a batch gives each record the verdict one Apply after
// another would (checked against the records before it in the batch),
// counts the same, and leaves on disk exactly what they would: a restart
// reads back the same set.
func TestApplyBatch(t *testing.T) {
	w := newWorld(t)
	a, b, c := edSigner(t, 0x51), ecSigner(t, 0x52), edSigner(t, 0x53)
	j1 := mustEncode(t, w.rec(KindJoin, 65101, 0, 1, a, "10.101.0.0/16"))
	batch := [][]byte{
		j1,
		mustEncode(t, w.rec(KindJoin, 65102, 100, 1, b, "10.102.0.0/16", "2001:db8:102::/48")),
		j1,                // the same bytes again: a replay
		[]byte("garbage"), // malformed
		mustEncode(t, w.rec(KindUpdate, 65101, 0, 2, a, "10.101.0.0/16", "10.111.0.0/16")), // beats the first, in the same batch
		mustEncode(t, w.rec(KindJoin, 65103, 0, 1, c, "10.102.0.0/16")),                    // a prefix the second holds
		mustEncode(t, w.rec(KindJoin, 65104, 0, 1, edSigner(t, 0x54), "10.104.0.0/16")),
		mustEncode(t, w.rec(KindExit, 65104, 0, 2, edSigner(t, 0x54))), // its exit, same batch
	}

	// The reference: one ApplyBytes after another, no store.
	ref := NewSet(w.policy)
	var want []ApplyResult
	for _, e := range batch {
		changed, err := ref.ApplyBytes(e)
		want = append(want, ApplyResult{Changed: changed, Err: err})
	}

	dir := filepath.Join(t.TempDir(), "members")
	s, err := OpenSet(dir, w.policy)
	if err != nil {
		t.Fatal(err)
	}
	notified := 0
	s.SetOnChange(func() { notified++ })
	got := s.ApplyBatch(batch)
	for i := range batch {
		if got[i].Changed != want[i].Changed || ReasonOf(got[i].Err) != ReasonOf(want[i].Err) {
			t.Errorf("record %d: batch gives changed=%v %v, one by one changed=%v %v",
				i, got[i].Changed, got[i].Err, want[i].Changed, want[i].Err)
		}
	}
	if s.Digest() != ref.Digest() {
		t.Error("the batch and one-by-one sets differ")
	}
	if !reflect.DeepEqual(s.Counters(), ref.Counters()) {
		t.Errorf("counters: batch %+v, one by one %+v", s.Counters(), ref.Counters())
	}
	if notified != 1 {
		t.Errorf("onChange called %d times for one batch, want 1", notified)
	}

	// Durable: a restart reads back the same set, one file per AS, no
	// temp file left.
	s2, err := OpenSet(dir, w.policy)
	if err != nil {
		t.Fatal(err)
	}
	if s2.Digest() != s.Digest() {
		t.Fatal("digest changed across restart")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		names := []string{}
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("files %v, want AS65101, AS65102, AS65104", names)
	}
	if len(s2.Quarantined()) != 0 {
		t.Fatalf("quarantined: %+v", s2.Quarantined())
	}
	if r := s.ApplyBatch(nil); len(r) != 0 {
		t.Fatal("empty batch")
	}
}

// TestReadersDoNotWaitForWriters: while a change holds the write lock (as
// it does across the disk write of a record), the set still answers
// readers. A reader that waited would hang here.
func TestReadersDoNotWaitForWriters(t *testing.T) {
	w := newWorld(t)
	s := NewSet(w.policy)
	populate(t, w, s)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.Standing(65101)
	_, _ = s.Get(65101)
	_, _ = s.Encoded(65101)
	_ = s.Summary()
	_ = s.Digest()
	_ = s.Records()
	_ = s.Counters()
}
