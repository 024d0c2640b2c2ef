// Package packaging holds the tests of how psavd is installed: the systemd
// unit (deploy/systemd/psavd.service) is one systemd accepts and whose
// sandbox systemd-analyze security rates at most MaxExposure, and the .deb
// that `make deb` builds from deploy/nfpm.yaml holds every file in its place
// with the control fields it should. They run the real systemd-analyze and
// dpkg-deb (tools/debian-packages.txt), and nfpm as the go.mod tool.
package packaging

// MaxExposure is the highest "Overall exposure level" of
// `systemd-analyze security` the unit may have (0 is a fully sandboxed
// service, 10 an unsandboxed one).
const MaxExposure = 4.0
