#!/usr/bin/env bash
# Builds NTFS images with mkntfs, filled through ntfs-3g (FUSE on the image file).
#
#   hw-fixtures/ntfs.sh OUTDIR
#
# Writes:
# - OUTDIR/ntfs.img (64 MiB, label "NtfsFixture"): the tree of fat-tree.sh (with emoji), plus
#   an LZNT1-compressed directory `packed/` (FILE_ATTRIBUTE_COMPRESSED set through the
#   `system.ntfs_attrib_be` xattr, files written with `-o compression`: text, random data,
#   zeros, a resident file), a sparse file `sparse.bin` (16 MiB, 5,000 bytes written at
#   4 MiB), `ads.txt` with an alternate data stream `secret` (`streams_interface=windows`),
#   hard links (`links/original.txt`, `links/second name.txt`, `a/third link.txt`), an
#   Interix symlink made with `ln -s` and a reparse-point symlink set through the
#   `system.ntfs_reparse_data` xattr, DOS 8.3 aliases (`system.ntfs_dos_name`) on a file and
#   a directory, a path longer than 260 characters, a 12 MiB random
#   file, and fixed mtimes (1985, 2001, 2040, 1970 and a time with 100 ns digits).
# - OUTDIR/frag.img (32 MiB, 4 KiB clusters): fragmented on purpose: `/fill` is filled with
#   4,000-byte files until the volume is full, every other one is deleted, then small
#   (resident) files make $MFT grow into the 4 KiB holes until 4 MiB are left, then
#   `fragmented.bin` (3 MiB) is written into what is left. $MFT, the `/fill` index and `fragmented.bin` then
#   need $ATTRIBUTE_LIST (checked with ntfsinfo; the script fails otherwise).
#
# The oracle is ntfs-3g itself: tests mount the images read-only and compare. Runs as root
# (FUSE). Needs ntfs-3g (mkntfs, ntfs-3g, ntfsinfo), attr (setfattr) and coreutils; installs
# nothing. Takes about half a minute.
set -euo pipefail
trap 'echo "$0: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
for tool in mkntfs ntfs-3g ntfsinfo setfattr umount truncate; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (install ntfs-3g, attr and util-linux)" >&2
        exit 1
    }
done
if [ "$(id -u)" -ne 0 ]; then
    echo "$0: must run as root (ntfs-3g needs FUSE)" >&2
    exit 1
fi
if [ ! -e /dev/fuse ]; then
    echo "$0: /dev/fuse is missing (FUSE is not available)" >&2
    exit 1
fi

here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
img=$out/ntfs.img
frag=$out/frag.img
rm -f "$img" "$frag"
work=$(mktemp -d)
mnt=$work/mnt
mkdir "$mnt"
mounted=
cleanup() {
    if [ -n "$mounted" ]; then
        umount "$mnt" || echo "$0: could not unmount $mnt" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- ntfs.img ---
truncate -s 64M "$img"
mkntfs -F -Q -q -L NtfsFixture "$img" >/dev/null 2>&1
ntfs-3g -o streams_interface=windows,compression "$img" "$mnt"
mounted=1
"$here/fat-tree.sh" "$work/src" --emoji
cp -a "$work/src"/. "$mnt"/

# A compressed directory: new files in it are compressed by ntfs-3g.
mkdir "$mnt/packed"
setfattr -h -n system.ntfs_attrib_be -v 0x00000810 "$mnt/packed"
seq 1 300000 >"$mnt/packed/numbers.txt"
head -c 300000 /dev/urandom >"$mnt/packed/random.bin"
{
    seq 1 20000
    head -c 1048576 /dev/zero
    seq 1 20000
} >"$mnt/packed/mixed.bin"
echo "small and resident" >"$mnt/packed/small.txt"
mkdir "$mnt/packed/sub"
seq 5 5 500000 >"$mnt/packed/sub/fives.txt"

# A sparse file: a hole, data, a hole.
truncate -s 16M "$mnt/sparse.bin"
head -c 5000 /dev/urandom | dd of="$mnt/sparse.bin" bs=4096 seek=1024 conv=notrunc status=none

# An alternate data stream (not part of the file's content).
echo "main stream" >"$mnt/ads.txt"
echo "hidden stream" >"$mnt/ads.txt:secret"

# Hard links: one file, three names in two directories.
mkdir "$mnt/links"
seq 1 3000 >"$mnt/links/original.txt"
ln "$mnt/links/original.txt" "$mnt/links/second name.txt"
ln "$mnt/links/original.txt" "$mnt/a/third link.txt"

# Symlinks: ntfs-3g writes `ln -s` as an Interix symlink; a reparse-point symlink (as
# Windows writes them: relative, target "links\original.txt") is set as raw reparse data.
ln -s links/original.txt "$mnt/interix-link"
: >"$mnt/reparse-link"
target=$(printf 'links\\original.txt' | iconv -f UTF-8 -t UTF-16LE | od -An -tx1 | tr -d ' \n')
tlen=$(printf 'links\\original.txt' | wc -c)
tbytes=$((tlen * 2))
le16() { printf '%02x%02x' $(($1 & 255)) $(($1 >> 8)); }
le32() { printf '%s%s' "$(le16 $(($1 & 65535)))" "$(le16 $(($1 >> 16)))"; }
# Tag, data length, reserved; substitute name (offset 0), print name (after it), flags 1
# (relative); then both names.
data_len=$((12 + 2 * tbytes))
reparse=$(le32 $((0xA000000C)))$(le16 $data_len)0000$(le16 0)$(le16 $tbytes)$(le16 $tbytes)$(le16 $tbytes)$(le32 1)$target$target
setfattr -h -n system.ntfs_reparse_data -v "0x$reparse" "$mnt/reparse-link"

# A path longer than 260 characters.
long=$mnt
for i in 1 2 3 4 5 6; do
    long=$long/level-$i-$(printf 'x%.0s' $(seq 1 50))
done
mkdir -p "$long"
echo "far away" >"$long/leaf.txt"

# DOS 8.3 aliases (a second $FILE_NAME in the DOS namespace, the long name becomes Win32):
# not files of their own.
setfattr -h -n system.ntfs_dos_name -v "ALONGF~1.TEX" \
    "$mnt/A long file name with spaces, commas and more than 8.3 characters.text"
mkdir "$mnt/Long Directory Name"
echo "inside" >"$mnt/Long Directory Name/file.txt"
setfattr -h -n system.ntfs_dos_name -v "LONGDI~1" "$mnt/Long Directory Name"

# Big files.
head -c $((12 * 1024 * 1024)) /dev/urandom >"$mnt/random-12m.bin"
head -c $((5 * 1024 * 1024 + 777)) /dev/urandom >"$mnt/a/b/random-5m.bin"

# Fixed times, including one before 1980 and one after 2038.
touch -d '1985-06-01 12:00:00' "$mnt/a/top.txt"
touch -d '2001-09-09 01:46:40' "$mnt/README.TXT"
touch -d '2040-02-29 23:59:58' "$mnt/big.bin"
touch -d '1970-01-01 00:00:00' "$mnt/empty.txt"
touch -d '2020-02-02 02:02:02.123456789' "$mnt/packed/numbers.txt"
sync
umount "$mnt"
mounted=

# --- frag.img ---
truncate -s 32M "$frag"
mkntfs -F -Q -q -c 4096 -L Fragmented "$frag" >/dev/null 2>&1
ntfs-3g "$frag" "$mnt"
mounted=1
mkdir "$mnt/fill"
# No pipe into head: under pipefail, seq dying of SIGPIPE would fail the script.
blob=$(seq 1 2000)
blob=${blob:0:3999}
i=0
# Builtins only (no process per file): fill the volume with 1-cluster files.
while { echo "$blob" >"$mnt/fill/f$i"; } 2>/dev/null; do
    i=$((i + 1))
done
rm -f "$mnt/fill/f$i"
for ((j = 0; j < i; j += 2)); do
    rm -f "$mnt/fill/f$j"
done
# Small resident files: the freed records first, then $MFT grows into the holes.
# Stop while 4 MiB are still free (ntfs-3g's statfs), for the big file.
for ((k = 0; k < 12000; k++)); do
    if ((k % 200 == 0)) && (($(stat -f -c '%a * %S' "$mnt") < 4 * 1024 * 1024)); then
        break
    fi
    { echo "small $k" >"$mnt/fill/s$k"; } 2>/dev/null || break
done
head -c $((3 * 1024 * 1024)) /dev/urandom >"$mnt/fragmented.bin"
sync
umount "$mnt"
mounted=

for spec in "-i 0" "-F /fill" "-F /fragmented.bin"; do
    # shellcheck disable=SC2086
    info=$(ntfsinfo $spec "$frag" 2>/dev/null || true)
    if [[ $info != *ATTRIBUTE_LIST* ]]; then
        echo "$0: frag.img: $spec has no \$ATTRIBUTE_LIST; the recipe no longer fragments" >&2
        exit 1
    fi
done
