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

func TestStoreRefusesCorruption(t *testing.T) {
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
			_, err = OpenSet(dir, w.policy)
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("want error naming %s, got %v", path, err)
			}
		})
	}
}

func TestStoreRefusesMisplacedRecord(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	s, _ := OpenSet(dir, w.policy)
	populate(t, w, s)
	// A valid record under the wrong name must not be loaded as another AS.
	if err := os.Rename(filepath.Join(dir, "AS65101.rec"), filepath.Join(dir, "AS65109.rec")); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSet(dir, w.policy); err == nil || !strings.Contains(err.Error(), "AS65109.rec") {
		t.Fatalf("got %v", err)
	}
}

// TestStoreReverifies: the disk is not trusted more than a peer; a record
// whose community is no longer configured fails the load.
func TestStoreReverifies(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	s, _ := OpenSet(dir, w.policy)
	populate(t, w, s)
	only0, _ := NewPolicy(map[uint32][]PublicKey{0: {w.comm[0].Public()}})
	if _, err := OpenSet(dir, only0); err == nil || !strings.Contains(err.Error(), "unknown-community") {
		t.Fatalf("got %v", err)
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
