#!/usr/bin/env bash
# Builds a 64 MiB GPT disk image with three partitions, each holding a filesystem made from
# its own source tree.
#
#   hw-fixtures/disk-gpt.sh OUTDIR [SECTOR_SIZE]      SECTOR_SIZE = 512 (default) | 4096
#
# Writes OUTDIR/disk-gpt.img and OUTDIR/src-p1, src-p2, src-p3. The table is written by sfdisk
# on the image file (by `fdisk -b 4096` for 4096-byte sectors, which sfdisk 2.38 cannot set);
# each filesystem is made by
# `mkfs.ext* -d` on a separate file and copied into place with `dd conv=notrunc`:
#
#   p1 "alpha"  28 MiB  ext4, label alpha  (a 9 MiB file, so 8 MiB reads are exercised)
#   p2 "beta"   16 MiB  ext3, label beta   (a FIFO)
#   p3 "gamma"  rest    ext2, label gamma
#
# Every tree has nested directories, a name with spaces, a Unicode name, a name that is not
# UTF-8, a name with a backslash, an empty file, a symlink and fixed mtimes. Installs nothing.
set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
    echo "usage: $0 OUTDIR [512|4096]" >&2
    exit 2
fi
out=$1
ss=${2:-512}
case "$ss" in
    512 | 4096) ;;
    *)
        echo "$0: SECTOR_SIZE must be 512 or 4096, not '$ss'" >&2
        exit 2
        ;;
esac
for tool in sfdisk fdisk mkfs.ext2 mkfs.ext3 mkfs.ext4 mkfifo truncate dd awk; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (install fdisk, e2fsprogs, coreutils, gawk/mawk)" >&2
        exit 1
    }
done

mkdir -p "$out"
img=$out/disk-gpt.img
rm -rf "$img" "$out"/src-p1 "$out"/src-p2 "$out"/src-p3

# make_tree DIR TAG: a small tree whose contents depend on TAG.
make_tree() {
    local dir=$1 tag=$2
    mkdir -p "$dir/docs/deep/a/b"
    printf 'partition %s\n' "$tag" >"$dir/README.txt"
    head -c 5000 < <(yes "$tag notes") >"$dir/docs/notes v1.txt"
    head -c 70001 < <(yes "$tag leaf") >"$dir/docs/deep/a/b/leaf.bin"
    printf '%s unicode\n' "$tag" >"$dir/café 日本語 $tag.txt"
    printf '%s latin-1\n' "$tag" >"$dir/$(printf 'bad_\xff\xfe_caf\xe9')"
    printf '%s backslash\n' "$tag" >"$dir/back\\slash.txt"
    : >"$dir/empty"
    ln -s README.txt "$dir/link"
    touch -h -d @489000000 "$dir/link" "$dir/README.txt"
    touch -d @1000000000 "$dir/docs/notes v1.txt" "$dir/empty"
    touch -d @1234567890 "$dir/docs/deep/a/b" "$dir/docs/deep/a" "$dir/docs/deep" "$dir/docs"
}

make_tree "$out/src-p1" p1
head -c $((9 * 1024 * 1024 + 12345)) /dev/urandom >"$out/src-p1/big.bin"
make_tree "$out/src-p2" p2
mkfifo "$out/src-p2/fifo"
make_tree "$out/src-p3" p3

truncate -s 64M "$img"
if [ "$ss" = 512 ]; then
    sfdisk --quiet "$img" <<'TABLE'
label: gpt
first-lba: 2048
start=1MiB, size=28MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="alpha"
start=29MiB, size=16MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="beta"
start=45MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="gamma"
TABLE
else
    # sfdisk 2.38 cannot set the sector size of an image file (--sector-size came in 2.39);
    # fdisk -b can. The same layout: 1 MiB = LBA 256.
    printf '%s\n' g n 1 256 +28M n 2 '' +16M n 3 '' '' x n 1 alpha n 2 beta n 3 gamma r w |
        fdisk -b "$ss" "$img" >/dev/null
fi

# place N KIND LABEL: makes the filesystem for partition N and copies it into the image.
place() {
    local n=$1 kind=$2 label=$3 start size part
    read -r start size < <(fdisk -b "$ss" -l -o Device,Start,Sectors "$img" |
        awk -v node="${img}$n" '$1 == node { print $2, $3 }')
    if [ -z "${start:-}" ] || [ -z "${size:-}" ]; then
        echo "$0: fdisk does not list partition $n of $img" >&2
        exit 1
    fi
    part=$out/p$n.fs
    rm -f "$part"
    truncate -s $((size * ss)) "$part"
    "mkfs.$kind" -q -F -L "$label" -d "$out/src-p$n" "$part"
    dd if="$part" of="$img" bs=1M seek=$((start * ss)) oflag=seek_bytes conv=notrunc status=none
    rm -f "$part"
}

place 1 ext4 alpha
place 2 ext3 beta
place 3 ext2 gamma
