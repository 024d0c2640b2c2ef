package config

import (
	"fmt"

	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/engine"
)

// Capture is [capture]: sampled dropped frames to pcap files (docs/wire.md
// §2.2). The capture has no durations: its writer's period is fixed.
type Capture struct {
	Dir      string // where the files go
	MaxBytes int64  // a file is rotated before it passes this size, 4096 … 1 TiB, default 10 MiB
	Keep     int    // rotated files kept per (port, reason), 0 … 1000, default 5
	// Sampling is what the poll loops take: every (1 … 1000000, default
	// 100), per_second (0 = no limit … 1000000, default 10), snap
	// (64 … 65535, default 256) and reasons (none: every reason).
	Sampling engine.CaptureConfig
}

// Bounds of [capture].
const (
	MaxCaptureEvery    = 1_000_000
	MaxCapturePerSec   = 1_000_000
	MaxCaptureBytes    = 1 << 40
	MaxCaptureKeep     = 1000
	MinCaptureMaxBytes = 4096
)

func (c *Config) checkCapture(k *checker, f *schema.File) {
	cp := f.Capture
	if cp == nil {
		return
	}
	t := &Capture{Dir: cp.Dir,
		MaxBytes: orDefault(k.set("capture.max_bytes"), cp.MaxBytes, 10<<20),
		Keep:     orDefault(k.set("capture.keep"), cp.Keep, 5),
		Sampling: engine.CaptureConfig{
			Every:     orDefault(k.set("capture.every"), cp.Every, 100),
			PerSecond: orDefault(k.set("capture.per_second"), cp.PerSecond, 10),
			Snap:      orDefault(k.set("capture.snap"), cp.Snap, 256),
		}}
	c.Capture = t
	if cp.Dir == "" {
		k.add("capture.dir", "missing (a directory for the pcap files)")
	}
	between(k, "capture.every", t.Sampling.Every, 1, MaxCaptureEvery)
	between(k, "capture.per_second", t.Sampling.PerSecond, 0, MaxCapturePerSec)
	between(k, "capture.snap", t.Sampling.Snap, 64, 65535)
	if t.MaxBytes < MinCaptureMaxBytes {
		k.add("capture.max_bytes", "must be at least 4096, is %d", t.MaxBytes)
	} else if t.MaxBytes > MaxCaptureBytes {
		k.add("capture.max_bytes", "must be at most %d (1 TiB), is %d", int64(MaxCaptureBytes), t.MaxBytes)
	}
	if t.Keep < 0 {
		k.add("capture.keep", "must not be negative")
	} else if t.Keep > MaxCaptureKeep {
		k.add("capture.keep", "must be at most %d, is %d", MaxCaptureKeep, t.Keep)
	}
	for i, r := range cp.Reasons {
		if !k.oneOf(fmt.Sprintf("capture.reasons[%d]", i), r, DropReasonNames...) {
			continue
		}
		for _, er := range engine.Reasons() {
			if er.String() == r {
				t.Sampling.Reasons[er] = true
			}
		}
	}
}

// DropReasonNames are the engine's drop reasons as configured in
// capture.reasons (a test checks they are engine.Reasons in order).
var DropReasonNames = []string{"spoofed-local", "spoofed-inside", "no-tag", "bad-tag", "stale-epoch", "no-key", "no-room", "malformed", "no-route", "not-ip", "tx-full", "ttl-expired",
	"lisp-miss", "lisp-negative", "lisp-no-rloc", "lisp-decap", "lisp-encap", "too-big"}
