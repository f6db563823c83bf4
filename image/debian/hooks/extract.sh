#!/bin/sh
# mmdebstrap --extract-hook: the essential set is unpacked, nothing is configured yet.
# $1 is the root being built; SYNCPI_ASK is the build's answer pipe (src/image/bootstrap.ts).
set -eu
root=$1

# the tree becomes an image or nothing: dpkg need not sync every file it writes (customize.sh
# removes this again, before the image)
echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/syncpi-build"

# the build offers this machine's dpkg-deb and file tools in the root before dpkg configures
# anything; without an answer in 10 minutes the build is gone, and so is this one
[ -p "${SYNCPI_ASK:-}" ] || exit 0
echo "syncpi: native tools wanted in $root" >&2
answer=$(timeout 600 sh -c 'read -r a < "$1" && echo "$a"' sh "$SYNCPI_ASK")
echo "syncpi: native tools $answer" >&2
