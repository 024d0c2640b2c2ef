package config

import (
	"path/filepath"

	"github.com/psavd/psavd/control/config/schema"
	"github.com/psavd/psavd/control/mgmtpb"
)

// DefaultControlSocket is where psavctl finds the local node when [control]
// socket is not given (docs/wire.md §4.2).
const DefaultControlSocket = mgmtpb.DefaultSocket

// Control is [control]: the local management socket every node serves.
type Control struct {
	Socket string // an absolute path; DefaultControlSocket when not given
	// Configured is whether the file names the socket: a configured socket
	// that cannot be bound is a failure; the default one, taken by another
	// psavd on the same machine, is skipped with a warning.
	Configured bool
}

func (c *Config) checkControl(k *checker, f *schema.File) {
	c.Control = Control{Socket: DefaultControlSocket}
	if f.Control == nil || !k.set("control.socket") {
		return
	}
	s := f.Control.Socket
	c.Control = Control{Socket: s, Configured: true}
	switch {
	case !filepath.IsAbs(s):
		k.add("control.socket", "%q is not an absolute path", s)
	case len(s) > 107: // sun_path
		k.add("control.socket", "%q is longer than a Unix socket path may be (107 octets)", s)
	}
}
