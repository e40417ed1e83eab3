#!/bin/sh
# Installs etcd 3.4 (Debian's etcd-server and etcd-client packages) for `cuttle bench locks`,
# which compares cuttle's lock hand-off with etcd's in the same run. Does nothing when `etcd`
# is already on PATH. Exit status 0 when etcd is usable afterwards, 1 with a reason otherwise.
set -u

if command -v etcd >/dev/null 2>&1; then
    echo "install-etcd: etcd is already installed: $(command -v etcd)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-etcd: etcd is missing and this system has no apt-get; install etcd 3.4 (etcd and etcdctl on PATH) by hand, or run the bench with --etcd skip" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install-etcd: etcd is missing and installing it needs root (apt-get install etcd-server etcd-client); run this script as root, or the bench with --etcd skip" >&2
        exit 1
    fi
fi
echo "install-etcd: installing etcd-server and etcd-client with apt-get" >&2
# The package's own service would start a fourth etcd on the default ports: keep it from starting.
export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d
CREATED_POLICY=0
if [ ! -e "$POLICY" ] && [ -z "$SUDO" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY" && chmod +x "$POLICY" && CREATED_POLICY=1
fi
status=0
if ! $SUDO apt-get install -y --no-install-recommends etcd-server etcd-client >&2; then
    echo "install-etcd: apt-get install failed; refreshing the package lists and trying once more" >&2
    $SUDO apt-get update >&2 && $SUDO apt-get install -y --no-install-recommends etcd-server etcd-client >&2 || status=1
fi
if [ "$CREATED_POLICY" -eq 1 ]; then
    rm -f "$POLICY"
fi
if [ "$status" -ne 0 ] || ! command -v etcd >/dev/null 2>&1; then
    echo "install-etcd: could not install etcd with apt-get (no package mirror reachable?); install etcd 3.4 by hand, or run the bench with --etcd skip" >&2
    exit 1
fi
echo "install-etcd: installed $(etcd --version 2>/dev/null | head -1)" >&2
exit 0
