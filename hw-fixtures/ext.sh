#!/usr/bin/env bash
# Builds an ext2/ext3/ext4 image and the source tree it was made from.
#
#   hw-fixtures/ext.sh OUTDIR KIND      KIND = ext2 | ext3 | ext4 | ext4-features
#
# Writes OUTDIR/src (the tree), OUTDIR/KIND.img (64 MiB, made with `mkfs.KIND -d`, htree
# indexes built by `e2fsck -fyD`) and OUTDIR/post2038.txt ("path seconds" for every entry whose
# mtime is after 2038-01-19: mke2fs 1.47 truncates those to 32 bits, so they are set again with
# debugfs, and the source tree keeps the same value). Needs e2fsprogs; installs nothing.
# ext2/ext3 use 1 KiB blocks (so the sparse file reaches the triple-indirect range), ext4 uses
# 4 KiB blocks. ext4-features is ext4 on 1 KiB blocks with inline_data, meta_bg, 64bit and the
# older gdt_csum (uninit_bg) instead of metadata_csum. Device nodes are added only when run as
# root.
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 OUTDIR ext2|ext3|ext4|ext4-features" >&2
    exit 2
fi
out=$1
kind=$2
mkfs=mkfs.$kind
features=()
case "$kind" in
    ext2 | ext3) blocksize=1024 ;;
    ext4) blocksize=4096 ;;
    ext4-features)
        mkfs=mkfs.ext4
        blocksize=1024
        features=(-O inline_data,meta_bg,^resize_inode,^metadata_csum,uninit_bg,64bit)
        ;;
    *)
        echo "$0: unknown KIND '$kind' (ext2, ext3, ext4 or ext4-features)" >&2
        exit 2
        ;;
esac
for tool in "$mkfs" e2fsck debugfs mkfifo truncate; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (install e2fsprogs / coreutils)" >&2
        exit 1
    }
done

mkdir -p "$out"
src=$out/src
img=$out/$kind.img
rm -rf "$src" "$img"
mkdir "$src"

# Nested directories.
mkdir -p "$src/a/b/c/d/e"
echo "top" >"$src/a/top.txt"
echo "deep" >"$src/a/b/c/d/e/deep.txt"
printf 'x%.0s' $(seq 1 5000) >"$src/a/b/mid.txt"

# A directory of 5,000 entries: e2fsck -D turns it into an htree.
mkdir "$src/many"
for i in $(seq -w 0 4999); do
    printf '%s\n' "$i" >"$src/many/file-$i.txt"
done

# A file of a few MiB plus odd bytes (deterministic content).
seq 1 500000 >"$src/big.bin" # 3.4 MB, cut below
truncate -s $((3 * 1024 * 1024 + 12345)) "$src/big.bin"

# Sparse: a block at 0, a hole over the whole single-indirect and much of the double-indirect
# range (on 1 KiB blocks), islands at 40 MiB and 70 MiB (triple-indirect on 1 KiB blocks), and a
# hole at the end.
sparse=$src/sparse.bin
printf 'start' | dd of="$sparse" bs=1 seek=0 conv=notrunc status=none
printf 'forty' | dd of="$sparse" bs=1M seek=40 conv=notrunc status=none
printf 'seventy' | dd of="$sparse" bs=1M seek=70 conv=notrunc status=none
truncate -s 75M "$sparse"

# Fragmented: 2,000 one-byte islands 8 KiB apart, so the ext4 extent tree has depth > 0.
frag=$src/frag.bin
: >"$frag"
for i in $(seq 0 1999); do
    printf '%04d' "$i" | dd of="$frag" bs=8192 seek="$i" conv=notrunc status=none
done
truncate -s 16M "$frag"

: >"$src/empty"
printf 'not utf-8\n' >"$src/$(printf 'bad_\xff\xfe_caf\xe9')"
ln -s big.bin "$src/link-fast"
slow_target=a/b/c/d/e/$(printf 'long-name-%.0s' $(seq 1 12))/../../deep.txt
ln -s "$slow_target" "$src/link-slow"
mkfifo "$src/fifo"
if [ "$(id -u)" = 0 ]; then
    mknod "$src/null-dev" c 1 3
    mknod "$src/loop-dev" b 7 200
fi

# Times: before 1970, and after 2038 (set again with debugfs below).
echo "old" >"$src/old.txt"
touch -h -d '@-307584000' "$src/old.txt" # 1960-04-03
touch -h -d '@-1' "$src/a/b/c/d/e/deep.txt"
echo "new" >"$src/new.txt"
echo "far" >"$src/far.txt"
: >"$out/post2038.txt"
touch -h -d '@2208988800' "$src/new.txt" # 2040-01-01
touch -h -d '@4102444800' "$src/far.txt" # 2100-01-01
echo "new.txt 2208988800" >>"$out/post2038.txt"
echo "far.txt 4102444800" >>"$out/post2038.txt"
# Directories last, since creating entries changes their mtimes.
touch -h -d '@-86400' "$src/a/b/c" # 1969-12-31
touch -h -d '@1000000000' "$src/many"

"$mkfs" -q -F -b "$blocksize" "${features[@]}" -N 12000 -L "$kind" -d "$src" "$img" 64M

# mke2fs 1.47.0 -d with inline_data drops a file's trailing hole from its size (the kernel
# then shows the shorter size too): set the sizes again.
if [ "$kind" = ext4-features ]; then
    for f in sparse.bin frag.bin; do
        debugfs -w -R "set_inode_field /$f size $(stat -c %s "$src/$f")" "$img" >/dev/null 2>&1
    done
fi

# Build htree indexes; exit code 1 means "fixed" (here: optimised directories).
rc=0
e2fsck -fyD "$img" >/dev/null 2>&1 || rc=$?
if [ "$rc" -gt 1 ]; then
    echo "$0: e2fsck -fyD failed with $rc" >&2
    exit 1
fi

while read -r path secs; do
    debugfs -w -R "set_inode_field /$path mtime @$secs" "$img" >/dev/null 2>&1
done <"$out/post2038.txt"

e2fsck -fn "$img" >/dev/null 2>&1 || {
    echo "$0: $img is not clean after building:" >&2
    e2fsck -fn "$img" >&2 || true
    exit 1
}
