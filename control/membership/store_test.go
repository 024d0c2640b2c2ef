package membership

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func populate(t *testing.T, w *world, s *Set) {
	t.Helper()
	a, b, c := edSigner(t, 0x51), ecSigner(t, 0x52), edSigner(t, 0x53)
	for _, r := range []Record{
		w.rec(KindJoin, 65101, 0, 1, a, "10.101.0.0/16"),
		w.rec(KindJoin, 65102, 100, 1, b, "10.102.0.0/16", "2001:db8:102::/48"),
		w.rec(KindJoin, 65103, 0, 1, c, "10.103.0.0/16"),
		w.rec(KindUpdate, 65101, 0, 2, a, "10.101.0.0/16", "10.111.0.0/16"),
		w.rec(KindExit, 65103, 0, 2, c),
	} {
		if _, err := s.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
}

func TestStoreRestart(t *testing.T) {
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "members")
	s, err := OpenSet(dir, w.policy)
	if err != nil {
		t.Fatal(err)
	}
	populate(t, w, s)
	// A crash mid-write leaves a temp file; it must be ignored and removed.
	if err := os.WriteFile(filepath.Join(dir, tmpPrefix+"junk"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}

	s2, err := OpenSet(dir, w.policy)
	if err != nil {
		t.Fatal(err)
	}
	if s.Digest() != s2.Digest() {
		t.Fatal("digest changed across restart")
	}
	if _, err := os.Stat(filepath.Join(dir, tmpPrefix+"junk")); !os.IsNotExist(err) {
		t.Fatal("temp file not cleaned up")
	}
	// The tombstone survived: the old join is still refused after restart.
	if _, err := s2.Apply(w.rec(KindJoin, 65103, 0, 1, edSigner(t, 0x53), "10.103.0.0/16")); ReasonOf(err) != ReasonStaleVersion {
		t.Fatalf("resurrection after restart: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Fatalf("%d files, want one per AS (3)", len(ents))
	}
}

// quarantined checks that OpenSet started, that the file at path was moved
// into the quarantine directory with a reason containing why, and that
// AS asn was not loaded.
func quarantined(t *testing.T, s *Set, err error, path, why string, asn uint32) {
	t.Helper()
	if err != nil {
		t.Fatalf("a bad record file stopped the start: %v", err)
	}
	q := s.Quarantined()
	if len(q) != 1 || q[0].File != path || !strings.Contains(q[0].Reason, why) {
		t.Fatalf("quarantined %+v, want %s (%s)", q, path, why)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("%s still in the store", path)
	}
	if _, err := os.Stat(q[0].MovedTo); err != nil || filepath.Dir(q[0].MovedTo) != filepath.Join(filepath.Dir(path), QuarantineDir) {
		t.Fatalf("not in quarantine: %+v (%v)", q[0], err)
	}
	if _, ok := s.Get(asn); ok {
		t.Fatalf("AS%d loaded from a quarantined file", asn)
	}
	if len(s.All()) == 0 {
		t.Fatal("the good records were not loaded")
	}
}

func TestStoreQuarantinesCorruption(t *testing.T) {
	w := newWorld(t)
	cases := map[string]func(path string, b []byte) []byte{
		"flipped signature bit": func(_ string, b []byte) []byte { b[len(b)-70] ^= 1; return b },
		"truncated":             func(_ string, b []byte) []byte { return b[:len(b)-3] },
		"empty":                 func(_ string, b []byte) []byte { return nil },
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := OpenSet(dir, w.policy)
			if err != nil {
				t.Fatal(err)
			}
			populate(t, w, s)
			path := filepath.Join(dir, "AS65102.rec")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, corrupt(path, b), 0o600); err != nil {
				t.Fatal(err)
			}
			s2, err := OpenSet(dir, w.policy)
			quarantined(t, s2, err, path, "", 65102)
			// The next start has nothing left to quarantine.
			if s3, err := OpenSet(dir, w.policy); err != nil || len(s3.Quarantined()) != 0 {
				t.Fatalf("second start: %v %+v", err, s3.Quarantined())
			}
		})
	}
}

func TestStoreQuarantinesMisplacedRecord(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	s, _ := OpenSet(dir, w.policy)
	populate(t, w, s)
	// A valid record under the wrong name must not be loaded as another AS.
	if err := os.Rename(filepath.Join(dir, "AS65101.rec"), filepath.Join(dir, "AS65109.rec")); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenSet(dir, w.policy)
	quarantined(t, s2, err, filepath.Join(dir, "AS65109.rec"), "holds AS65101", 65109)
}

// TestStoreReverifies: the disk is not trusted more than a peer; a record
// whose community is no longer configured (a retired community key) is
// quarantined, and the ACS starts.
func TestStoreReverifies(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	s, _ := OpenSet(dir, w.policy)
	populate(t, w, s)
	only0, _ := NewPolicy(map[uint32][]PublicKey{0: {w.comm[0].Public()}})
	s2, err := OpenSet(dir, only0)
	if err != nil {
		t.Fatal(err)
	}
	q := s2.Quarantined()
	if len(q) == 0 || !strings.Contains(q[0].Reason, "unknown-community") {
		t.Fatalf("quarantined %+v", q)
	}
	for _, r := range s2.All() {
		if r.ASCN != 0 {
			t.Fatalf("AS%d of community %d loaded", r.ASN, r.ASCN)
		}
	}
}

func TestStoreWriteFailureRefuses(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	s, _ := OpenSet(dir, w.policy)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	_, err := s.Apply(w.rec(KindJoin, 65200, 0, 1, edSigner(t, 0x61), "10.200.0.0/16"))
	if ReasonOf(err) != ReasonStorage {
		t.Fatalf("got %v", err)
	}
	if len(s.All()) != 0 {
		t.Fatal("unpersisted record applied")
	}
}
