#!/usr/bin/env bash
# Builds an exFAT image and the source tree it was made from.
#
#   hw-fixtures/exfat.sh OUTDIR
#
# Writes OUTDIR/src (see fat-tree.sh; with a name outside the BMP) and OUTDIR/exfat.img
# (48 MiB, `mkfs.exfat`), filled by copying the tree with `cp -a` through `mount.exfat-fuse`,
# plus OUTDIR/src/grown.bin: 10,000 bytes grown to 300,000 with `truncate` (exfat-fuse writes
# the zeros, so the tests shorten its ValidDataLength in a copy of the image).
# No Debian tool fills an exFAT image without FUSE, and exfat-fuse needs a block device, so
# this runs as root: the image is attached with `losetup -f --show`, then unmounted and
# detached on exit, whatever happens. Needs exfatprogs, exfat-fuse and util-linux; installs
# nothing.
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
for tool in mkfs.exfat mount.exfat-fuse losetup umount; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (install exfatprogs, exfat-fuse and util-linux)" >&2
        exit 1
    }
done
if [ "$(id -u)" -ne 0 ]; then
    echo "$0: must run as root (exfat-fuse needs a loop device)" >&2
    exit 1
fi
if [ ! -e /dev/fuse ]; then
    echo "$0: /dev/fuse is missing (FUSE is not available)" >&2
    exit 1
fi

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
src=$out/src
img=$out/exfat.img
rm -rf "$src" "$img"
"$here/fat-tree.sh" "$src" --emoji

truncate -s 48M "$img"
mkfs.exfat -L Fixture "$img" >/dev/null

mnt=$(mktemp -d)
dev=
mounted=
cleanup() {
    if [ -n "$mounted" ]; then
        umount "$mnt" || echo "$0: could not unmount $mnt" >&2
    fi
    if [ -n "$dev" ]; then
        losetup -d "$dev" || echo "$0: could not detach $dev" >&2
    fi
    rmdir "$mnt" 2>/dev/null || true
}
trap cleanup EXIT
dev=$(losetup -f --show "$img")
mount.exfat-fuse "$dev" "$mnt" >/dev/null
mounted=1
cp -a "$src"/. "$mnt"/
# A file grown by truncate: its tail is zeros (the tests make its ValidDataLength end early).
head -c 10000 /dev/zero | tr '\0' 'v' >"$src/grown.bin"
truncate -s 300000 "$src/grown.bin"
head -c 10000 "$src/grown.bin" >"$mnt/grown.bin"
truncate -s 300000 "$mnt/grown.bin"
touch -r "$src/grown.bin" "$mnt/grown.bin"
sync
umount "$mnt"
mounted=
