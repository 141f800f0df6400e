#!/usr/bin/env bash
# Builds a FAT12, FAT16 or FAT32 image and the source tree it was made from.
#
#   hw-fixtures/fat.sh OUTDIR 12|16|32
#
# Writes OUTDIR/src (see fat-tree.sh) and OUTDIR/fatNN.img, made with `mkfs.vfat -F NN` and
# filled with `mcopy -s -m` (no mount, no root). Needs dosfstools and mtools; installs
# nothing. mtools drops characters outside the BMP, so the tree has none.
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 OUTDIR 12|16|32" >&2
    exit 2
fi
out=$1
bits=$2
# Sizes in KiB, and sectors per cluster where mkfs.vfat's choice would not fit the type.
case "$bits" in
    12) size_kb=8192 opts=(-s 8) ;;
    16) size_kb=16384 opts=(-s 4) ;;
    32) size_kb=40960 opts=(-s 1) ;;
    *)
        echo "$0: unknown FAT type '$bits' (12, 16 or 32)" >&2
        exit 2
        ;;
esac
for tool in mkfs.vfat mcopy; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (install dosfstools and mtools)" >&2
        exit 1
    }
done

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
src=$out/src
img=$out/fat$bits.img
rm -rf "$src" "$img"
"$here/fat-tree.sh" "$src"

mkfs.vfat -F "$bits" "${opts[@]}" -n "FIXTURE$bits" -C "$img" "$size_kb" >/dev/null
# UTF-8 names in, long names out; -m keeps mtimes.
export LC_ALL=C.UTF-8 MTOOLS_SKIP_CHECK=1
mcopy -s -m -i "$img" "$src"/* ::/
