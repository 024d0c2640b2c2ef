// Package pcap is a ports.Port over capture files: it receives the frames of
// a pcap file (Ethernet link type) and writes what it transmits to another.
// psavd replay uses it to run the real pipeline over a capture.
package pcap

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/psavd/psavd/ports"
)

// Reader is a port that receives the frames of a capture file, in order.
type Reader struct {
	name string
	f    *os.File
	r    *pcapgo.Reader
	bufs [][]byte
	// Last is the capture timestamp of the last frame received.
	Last time.Time
	eof  bool
}

// Open opens a capture file for reading as port name; batches hold up to
// batch frames.
func Open(name, path string, batch int) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := pcapgo.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		f.Close()
		return nil, fmt.Errorf("%s: link type %s, want Ethernet", path, r.LinkType())
	}
	p := &Reader{name: name, f: f, r: r, bufs: make([][]byte, batch)}
	for i := range p.bufs {
		p.bufs[i] = make([]byte, ports.Headroom+ports.MaxFrame)
	}
	return p, nil
}

// Name implements ports.Port.
func (p *Reader) Name() string { return p.name }

// Receive implements ports.Port. At the end of the file it returns 0 and
// io.EOF.
func (p *Reader) Receive(b *ports.Batch, _ time.Duration) (int, error) {
	b.Pkts = b.Pkts[:0]
	if p.eof {
		return 0, io.EOF
	}
	for len(b.Pkts) < cap(b.Pkts) && len(b.Pkts) < len(p.bufs) {
		data, ci, err := p.r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			p.eof = true
			break
		}
		if err != nil {
			return len(b.Pkts), err
		}
		p.Last = ci.Timestamp
		buf := p.bufs[len(b.Pkts)]
		if len(data) > ports.MaxFrame {
			data = data[:ports.MaxFrame]
		}
		n := copy(buf[ports.Headroom:], data)
		b.Pkts = append(b.Pkts, ports.Packet{Buf: buf, Off: ports.Headroom, Len: n})
	}
	if len(b.Pkts) == 0 && p.eof {
		return 0, io.EOF
	}
	return len(b.Pkts), nil
}

// Release implements ports.Port.
func (p *Reader) Release(b *ports.Batch) { b.Pkts = b.Pkts[:0] }

// Transmit implements ports.Port: a reader does not transmit.
func (p *Reader) Transmit(pkts []ports.Packet) (int, error) {
	return 0, errors.New("pcap reader port cannot transmit")
}

// Close implements ports.Port.
func (p *Reader) Close() error { return p.f.Close() }

// Writer is a port that writes every frame it transmits to a capture file;
// several ports may share one Writer.
type Writer struct {
	name string
	mu   sync.Mutex
	f    *os.File
	w    *pcapgo.Writer
	// Stamp gives the timestamp of written frames (default time.Now).
	Stamp func() time.Time
	// Frames is the number of frames written.
	Frames int
}

// Create creates a capture file for writing as port name.
func Create(name, path string) (*Writer, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return nil, err
	}
	return &Writer{name: name, f: f, w: w, Stamp: time.Now}, nil
}

// Name implements ports.Port.
func (p *Writer) Name() string { return p.name }

// Receive implements ports.Port: a writer receives nothing.
func (p *Writer) Receive(b *ports.Batch, timeout time.Duration) (int, error) {
	b.Pkts = b.Pkts[:0]
	return 0, nil
}

// Release implements ports.Port.
func (p *Writer) Release(b *ports.Batch) { b.Pkts = b.Pkts[:0] }

// Transmit implements ports.Port.
func (p *Writer) Transmit(pkts []ports.Packet) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := p.Stamp()
	for i := range pkts {
		f := pkts[i].Frame()
		ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(f), Length: len(f)}
		if err := p.w.WritePacket(ci, f); err != nil {
			return i, err
		}
		p.Frames++
	}
	return len(pkts), nil
}

// Close implements ports.Port.
func (p *Writer) Close() error { return p.f.Close() }

// WriteFile writes frames to a new capture file at path, each stamped ts.
func WriteFile(path string, ts time.Time, frames ...[]byte) error {
	w, err := Create("file", path)
	if err != nil {
		return err
	}
	w.Stamp = func() time.Time { return ts }
	pkts := make([]ports.Packet, len(frames))
	for i, f := range frames {
		pkts[i] = ports.Packet{Buf: f, Len: len(f)}
	}
	_, err = w.Transmit(pkts)
	return errors.Join(err, w.Close())
}

// ReadFile returns every frame of the capture file at path.
func ReadFile(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var frames [][]byte
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return frames, fmt.Errorf("%s: %w", path, err)
		}
		frames = append(frames, bytes.Clone(data))
	}
}
