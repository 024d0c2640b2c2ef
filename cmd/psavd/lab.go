package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// labCmd is `psavd lab [args]` (make run). The lab is a binary of its own,
// cmd/psavlab, so that psavd does not link it: labCmd replaces this process
// with psavlab (so Ctrl-C and SIGTERM reach the lab directly), passing the
// arguments through and this executable as the psavd the ABR nodes run.
func labCmd(args []string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "psavd lab: %v\n", err)
		return 1
	}
	bin, err := findPsavlab(self)
	if err != nil {
		fmt.Fprintf(os.Stderr, "psavd lab needs the psavlab binary: make build (%v)\n", err)
		return 1
	}
	argv := append([]string{bin, "-psavd", self}, args...)
	err = syscall.Exec(bin, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "psavd lab: exec %s: %v\n", bin, err)
	return 1
}

// findPsavlab returns psavlab next to the psavd executable self, else the
// one in PATH.
func findPsavlab(self string) (string, error) {
	next := filepath.Join(filepath.Dir(self), "psavlab")
	if st, err := os.Stat(next); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
		return next, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	p, err := exec.LookPath("psavlab")
	if err != nil {
		return "", fmt.Errorf("not next to %s nor in PATH", self)
	}
	return filepath.Abs(p)
}
