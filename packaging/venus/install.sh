#!/bin/sh
# Installs wattbridge on a Victron GX device (Venus OS) under /data, which
# survives firmware updates, and runs it as a daemontools service.
#
#   ./install.sh [TTY...]        e.g. ./install.sh ttyUSB0
#
# Run as root on the GX device, from a directory that holds what the
# cross-build produced (see README.md):
#   bin/wattbridge  lib/*.so*  plugins/*.so  share/devices/*.map  conf.d/*.conf
# Each TTY named is taken from serial-starter (which would otherwise start
# Victron's own drivers on it) at every boot.  /data/rc.local re-links the
# service after a firmware update, which empties /service.
#
# ROOT=/some/dir ./install.sh ... installs into a tree instead of / (tests).
set -eu
ROOT=${ROOT:-}
here=$(cd "$(dirname "$0")" && pwd)
WB="$ROOT/data/wattbridge"

for d in bin lib plugins share conf.d; do
    if [ ! -d "$here/$d" ]; then
        echo "install.sh: $here/$d is missing: copy the cross-build's output next to this script" >&2
        exit 1
    fi
done
mkdir -p "$WB/state" "$WB/conf.d"
for d in bin lib plugins share; do
    rm -rf "${WB:?}/$d"
    cp -a "$here/$d" "$WB/$d"
done
# the administrator's drop-ins are never overwritten
for f in "$here"/conf.d/*.conf; do
    [ -e "$f" ] || continue
    [ -e "$WB/conf.d/$(basename "$f")" ] || cp "$f" "$WB/conf.d/"
done
rm -rf "$WB/service"
cp -a "$here/service" "$WB/service"
chmod 755 "$WB/service/run" "$WB/service/log/run"

# /data/rc.local: at boot, take the ports from serial-starter and link the
# service (again after a firmware update)
rc="$ROOT/data/rc.local"
[ -f "$rc" ] || printf '#!/bin/sh\n' > "$rc"
chmod 755 "$rc"
sed -i '/# wattbridge$/d' "$rc"
for tty in "$@"; do
    echo "/opt/victronenergy/serial-starter/stop-tty.sh $tty # wattbridge" >> "$rc"
done
echo "ln -sfn /data/wattbridge/service /service/wattbridge # wattbridge" >> "$rc"

if [ -z "$ROOT" ]; then
    sh "$rc"
    echo "wattbridge installed; its log: tail -F /var/log/wattbridge/current"
    echo "configure it in /data/wattbridge/conf.d, then: svc -t /service/wattbridge"
fi
