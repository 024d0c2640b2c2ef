// Package capture writes the engine's sampled dropped frames (docs/wire.md §2.2)
// to pcap files for forensics: one file per (port of arrival, drop reason),
// e.g. outside-no-tag.pcap, rotated by size (outside-no-tag.pcap.1, .2, …)
// so a flood of spoofed traffic cannot fill the disk. Sampling and the rate
// limit happen on the packet path (engine.CaptureConfig); this package only
// drains the poll loops' rings from its own goroutine.
package capture

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/psavd/psavd/engine"
)

// Writer drains processors into rotating pcap files.
type Writer struct {
	dir      string
	snap     int
	maxBytes int64
	keep     int
	ports    []string

	mu    sync.Mutex
	procs []*engine.Processor
	files map[fileKey]*rotating
	// Written and Overflow are totals for metrics and tests.
	Written  uint64
	Overflow uint64
}

type fileKey struct {
	port   int
	reason engine.Reason
}

// New returns a writer into dir (created if missing). snap is the capture
// length the engine keeps; a file is rotated when it would pass maxBytes,
// and keep rotated files are kept besides the current one.
func New(dir string, snap int, maxBytes int64, keep int, portNames []string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	if maxBytes <= 0 {
		maxBytes = 10 << 20
	}
	if keep < 0 {
		keep = 0
	}
	return &Writer{dir: dir, snap: snap, maxBytes: maxBytes, keep: keep, ports: portNames, files: map[fileKey]*rotating{}}, nil
}

// Add registers a processor whose drops are captured (EnableCapture must
// have been called on it).
func (w *Writer) Add(p *engine.Processor) {
	w.mu.Lock()
	w.procs = append(w.procs, p)
	w.mu.Unlock()
}

// Run drains every interval until ctx is done, then once more, and closes
// the files.
func (w *Writer) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			err := w.Drain()
			return errors.Join(err, w.Close())
		case <-t.C:
			if err := w.Drain(); err != nil {
				return err
			}
		}
	}
}

// Drain writes what the processors captured since the last call.
func (w *Writer) Drain() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first error
	var overflow uint64
	for _, p := range w.procs {
		overflow += p.DrainCapture(func(c *engine.Captured) {
			if err := w.write(c); err != nil && first == nil {
				first = err
			}
		})
	}
	w.Overflow = overflow
	return first
}

func (w *Writer) write(c *engine.Captured) error {
	k := fileKey{c.Port, c.Reason}
	f := w.files[k]
	if f == nil {
		port := fmt.Sprintf("port%d", c.Port)
		if c.Port >= 0 && c.Port < len(w.ports) {
			port = w.ports[c.Port]
		}
		f = &rotating{path: filepath.Join(w.dir, port+"-"+c.Reason.String()+".pcap"), snap: w.snap, max: w.maxBytes, keep: w.keep}
		w.files[k] = f
	}
	if err := f.write(c); err != nil {
		return err
	}
	w.Written++
	return nil
}

// Close closes every file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for _, f := range w.files {
		errs = append(errs, f.close())
	}
	return errors.Join(errs...)
}

// rotating is one pcap file and its rotated predecessors.
type rotating struct {
	path string
	snap int
	max  int64
	keep int
	f    *os.File
	w    *pcapgo.Writer
	size int64
}

const pcapFileHeader, pcapRecordHeader = 24, 16

func (r *rotating) write(c *engine.Captured) error {
	rec := int64(pcapRecordHeader + len(c.Data))
	if r.f != nil && r.size+rec > r.max {
		if err := r.rotate(); err != nil {
			return err
		}
	}
	if r.f == nil {
		if err := r.open(); err != nil {
			return err
		}
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, c.UnixNano), CaptureLength: len(c.Data), Length: c.Length}
	if err := r.w.WritePacket(ci, c.Data); err != nil {
		return err
	}
	r.size += rec
	return nil
}

func (r *rotating) open() error {
	f, err := os.OpenFile(r.path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	w := pcapgo.NewWriter(f)
	snap := r.snap
	if snap <= 0 {
		snap = 65535
	}
	if err := w.WriteFileHeader(uint32(snap), layers.LinkTypeEthernet); err != nil {
		f.Close()
		return err
	}
	r.f, r.w, r.size = f, w, pcapFileHeader
	return nil
}

// rotate shifts path → path.1 → … → path.keep (the oldest is removed).
func (r *rotating) rotate() error {
	if err := r.close(); err != nil {
		return err
	}
	if r.keep == 0 {
		return os.Remove(r.path)
	}
	for i := r.keep - 1; i >= 1; i-- {
		from := fmt.Sprintf("%s.%d", r.path, i)
		if _, err := os.Stat(from); err == nil {
			if err := os.Rename(from, fmt.Sprintf("%s.%d", r.path, i+1)); err != nil {
				return err
			}
		}
	}
	return os.Rename(r.path, r.path+".1")
}

func (r *rotating) close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f, r.w = nil, nil
	return err
}
