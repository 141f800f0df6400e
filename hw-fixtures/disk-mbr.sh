#!/usr/bin/env bash
# Builds a 64 MiB MBR disk image: one primary partition and an extended partition holding two
# logical partitions, each with a filesystem made from its own source tree.
#
#   hw-fixtures/disk-mbr.sh OUTDIR
#
# Writes OUTDIR/disk-mbr.img and OUTDIR/src-p1, src-p2, src-p3, numbered in table order as
# `stationctl inspect --partition N` counts (the extended container is not counted):
#
#   1  primary (Linux: img1)   24 MiB  ext4, label one, bootable
#   -  extended (img2)         26 MiB to the end
#   2  logical (Linux: img5)   16 MiB  ext3, label five
#   3  logical (Linux: img6)   rest    ext2, label six
#
# The table is written by sfdisk on the image file; each filesystem is made by `mkfs.ext* -d`
# on a separate file and copied into place with `dd conv=notrunc`. Installs nothing.
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
for tool in sfdisk fdisk mkfs.ext2 mkfs.ext3 mkfs.ext4 truncate dd awk; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (install fdisk, e2fsprogs, coreutils, gawk/mawk)" >&2
        exit 1
    }
done

mkdir -p "$out"
img=$out/disk-mbr.img
rm -rf "$img" "$out"/src-p1 "$out"/src-p2 "$out"/src-p3

# make_tree DIR TAG: a small tree whose contents depend on TAG.
make_tree() {
    local dir=$1 tag=$2
    mkdir -p "$dir/sub dir/nested"
    printf 'MBR partition %s\n' "$tag" >"$dir/hello.txt"
    head -c 123457 < <(yes "$tag data") >"$dir/sub dir/nested/data.bin"
    printf '%s ünïcödé\n' "$tag" >"$dir/sub dir/Ångström-Ж $tag.txt"
    : >"$dir/empty"
    ln -s "sub dir/nested/data.bin" "$dir/link"
    touch -h -d @946684800 "$dir/hello.txt" "$dir/link"
    touch -d @1500000000 "$dir/sub dir/nested" "$dir/sub dir"
}

make_tree "$out/src-p1" p1
make_tree "$out/src-p2" p2
make_tree "$out/src-p3" p3

truncate -s 64M "$img"
# Logical partitions are named by their device node (img5, img6) in an sfdisk script; the
# names are relative, so run it where the image is.
(
    cd "$out"
    sfdisk --quiet disk-mbr.img <<'TABLE'
label: dos
disk-mbr.img1 : start=1MiB, size=24MiB, type=83, bootable
disk-mbr.img2 : start=26MiB, type=5
disk-mbr.img5 : size=16MiB, type=83
disk-mbr.img6 : type=83
TABLE
)

# place N LINUX_N KIND LABEL: makes the filesystem for partition N (Linux's img<LINUX_N>) and
# copies it into the image.
place() {
    local n=$1 linux=$2 kind=$3 label=$4 start size part
    read -r start size < <(fdisk -l -o Device,Start,Sectors "$img" |
        awk -v node="${img}$linux" '$1 == node { print $2, $3 }')
    if [ -z "${start:-}" ] || [ -z "${size:-}" ]; then
        echo "$0: fdisk does not list partition $linux of $img" >&2
        exit 1
    fi
    part=$out/p$n.fs
    rm -f "$part"
    truncate -s $((size * 512)) "$part"
    "mkfs.$kind" -q -F -L "$label" -d "$out/src-p$n" "$part"
    dd if="$part" of="$img" bs=1M seek=$((start * 512)) oflag=seek_bytes conv=notrunc status=none
    rm -f "$part"
}

place 1 1 ext4 one
place 2 5 ext3 five
place 3 6 ext2 six
