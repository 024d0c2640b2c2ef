//go:build !linux

package udpgso

// Available: no UDP segmentation offload outside Linux.
const Available = false

// Space is 0: there is no control message.
var Space = 0

// Append returns b unchanged.
func Append(b []byte, _ int) []byte { return b }
