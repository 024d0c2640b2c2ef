#!/bin/sh
# The .deb's postinstall (deploy/nfpm.yaml): create the psavd user and group
# from /usr/lib/sysusers.d/psavd.conf, and make systemd see the unit. Neither
# enables nor starts psavd: it needs /etc/psavd/engine.toml first.
set -e
# systemd-sysusers needs no running systemd (a chroot or an image build gets
# the user too); it is in the systemd package, so it may be absent.
if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers psavd.conf
fi
# Only where systemd is the init: in a container or chroot there is no
# manager to reload.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
