package membership

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Store keeps a Set on disk as one file per AS, named "AS<asn>.rec" and
// holding exactly the canonical encoding. One file per AS (rather than one
// file for the whole set) makes each accepted record a single small atomic
// write, and a corrupted file damages nothing but its own record.
type Store struct {
	dir string
}

const (
	fileExt   = ".rec"
	tmpPrefix = ".tmp-"
)

// OpenStore uses dir, creating it (mode 0700: the set is not secret, but
// nobody else should be able to plant records in it) if needed.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("membership: store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the directory the store writes to.
func (st *Store) Dir() string { return st.dir }

func (st *Store) fileName(asn uint32) string {
	return filepath.Join(st.dir, "AS"+strconv.FormatUint(uint64(asn), 10)+fileExt)
}

// put replaces the file for asn atomically: write a temp file in the same
// directory, fsync it, rename over the target, fsync the directory. A crash
// at any point leaves either the old record or the new one, never a torn
// file, and after put returns the new one survives power loss.
func (st *Store) put(asn uint32, enc []byte) error {
	f, err := st.stage(asn, enc)
	if err != nil {
		return err
	}
	if err := f.file.Sync(); err != nil {
		f.discard()
		return fmt.Errorf("membership: store fsync %s: %w", f.tmp, err)
	}
	return st.rename([]staged{f})
}

// staged is a record written to a temp file, not yet synced or renamed.
type staged struct {
	file *os.File
	tmp  string
	dst  string
}

func (f staged) discard() {
	f.file.Close()
	os.Remove(f.tmp)
}

// stage writes enc to a new temp file in the store's directory.
func (st *Store) stage(asn uint32, enc []byte) (staged, error) {
	f, err := os.CreateTemp(st.dir, tmpPrefix+"*")
	if err != nil {
		return staged{}, fmt.Errorf("membership: store: %w", err)
	}
	s := staged{file: f, tmp: f.Name(), dst: st.fileName(asn)}
	if _, err := f.Write(enc); err != nil {
		s.discard()
		return staged{}, fmt.Errorf("membership: store write %s: %w", s.tmp, err)
	}
	return s, nil
}

// install makes staged files durable together: one syncfs(2) flushes all
// their data (instead of one fsync each), then each is renamed over its
// target in order (a later file of the same AS wins) and the directory is
// synced once. The order data, rename, directory is what put's is, so a
// crash still leaves each file old or new, never torn.
func (st *Store) install(files []staged) error {
	err := unix.Syncfs(int(files[0].file.Fd()))
	if err != nil {
		err = fmt.Errorf("membership: store syncfs %s: %w", st.dir, err)
		for _, f := range files {
			f.discard()
		}
		return err
	}
	return st.rename(files)
}

// rename closes synced staged files, renames each into place and syncs the
// directory.
func (st *Store) rename(files []staged) error {
	var first error
	for _, f := range files {
		if first != nil {
			f.discard()
			continue
		}
		if err := f.file.Close(); err != nil {
			os.Remove(f.tmp)
			first = fmt.Errorf("membership: store close %s: %w", f.tmp, err)
			continue
		}
		if err := os.Rename(f.tmp, f.dst); err != nil {
			os.Remove(f.tmp)
			first = fmt.Errorf("membership: store rename %s: %w", f.dst, err)
		}
	}
	if first != nil {
		return first
	}
	return syncDir(st.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("membership: store fsync dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("membership: store fsync dir %s: %w", dir, err)
	}
	return nil
}

// QuarantineDir is the directory, inside the store's, where Load moves a
// record file it cannot take.
const QuarantineDir = "quarantine"

// Quarantined is one record file Load moved aside.
type Quarantined struct {
	File    string // where it was
	MovedTo string
	Reason  string
}

// Load reads every record file into s, verifying each one again with s's
// policy exactly as if it came from a peer: the disk is not trusted more
// than the network. A file that is unreadable, corrupted, misnamed or
// refused (say its community key was retired) does not stop the start: it
// is moved into the quarantine directory, where an operator can look at it,
// and listed by s.Quarantined; the rest load. Leftover temp files from an
// interrupted write are removed. Load fails only when the directory cannot
// be read or a file cannot be moved aside. It does not attach the store;
// see AttachStore.
func (st *Store) Load(s *Set) error {
	ents, err := os.ReadDir(st.dir)
	if err != nil {
		return fmt.Errorf("membership: store: %w", err)
	}
	for _, de := range ents {
		name := de.Name()
		path := filepath.Join(st.dir, name)
		if strings.HasPrefix(name, tmpPrefix) {
			// Never renamed, so never acknowledged: safe to drop.
			os.Remove(path)
			continue
		}
		if !strings.HasPrefix(name, "AS") || !strings.HasSuffix(name, fileExt) || !de.Type().IsRegular() {
			continue // not ours; leave operators' files alone
		}
		if why := st.loadFile(s, path, name); why != "" {
			if err := st.quarantine(s, path, name, why); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadFile applies one record file; it returns why it cannot ("" when it
// was taken).
func (st *Store) loadFile(s *Set, path, name string) string {
	asn, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "AS"), fileExt), 10, 32)
	if err != nil || asn == 0 {
		return "file name is not AS<asn>" + fileExt
	}
	b, err := readCapped(path)
	if err != nil {
		return err.Error()
	}
	r, err := Decode(b)
	if err != nil {
		return fmt.Sprintf("corrupted: %v", err)
	}
	if uint64(r.ASN) != asn {
		return fmt.Sprintf("holds AS%d", r.ASN)
	}
	s.writeMu.Lock()
	s.mu.Lock()
	reason, err := s.apply(r, true)
	s.mu.Unlock()
	s.writeMu.Unlock()
	if reason != ReasonNone {
		return fmt.Sprintf("refused (%s): %v", reason, err)
	}
	return ""
}

func (st *Store) quarantine(s *Set, path, name, why string) error {
	qdir := filepath.Join(st.dir, QuarantineDir)
	if err := os.MkdirAll(qdir, 0o700); err != nil {
		return fmt.Errorf("membership: store: quarantine %s: %w", path, err)
	}
	to := filepath.Join(qdir, fmt.Sprintf("%s.%d", name, time.Now().UnixNano()))
	if err := os.Rename(path, to); err != nil {
		return fmt.Errorf("membership: store: quarantine %s: %w", path, err)
	}
	s.mu.Lock()
	s.quarantined = append(s.quarantined, Quarantined{File: path, MovedTo: to, Reason: why})
	s.mu.Unlock()
	return nil
}

// Quarantined lists the record files the last Load moved aside.
func (s *Set) Quarantined() []Quarantined {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Quarantined(nil), s.quarantined...)
}

// readCapped reads at most MaxRecordSize bytes, so a huge planted file
// cannot exhaust memory.
func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxRecordSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxRecordSize {
		return nil, errors.New("file larger than any valid record")
	}
	return b, nil
}

// AttachStore makes every record s accepts from now on be written to st
// before Apply reports it, so "changed" always means "durable".
func (s *Set) AttachStore(st *Store) {
	s.mu.Lock()
	s.store = st
	s.mu.Unlock()
}

// OpenSet is the usual start-up path: open dir, load and re-verify every
// stored record into a new Set, and attach the store.
func OpenSet(dir string, policy *Policy) (*Set, error) {
	st, err := OpenStore(dir)
	if err != nil {
		return nil, err
	}
	s := NewSet(policy)
	if err := st.Load(s); err != nil {
		return nil, err
	}
	s.AttachStore(st)
	return s, nil
}
