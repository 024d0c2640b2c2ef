//go:build !linux

package bindtest

import "os/exec"

func setDeathSignal(*exec.Cmd) {}
