#!/usr/bin/env bash
# Builds HFS+ test images and the source tree they were made from.
#
#   hw-fixtures/hfsplus.sh OUTDIR
#
# Writes:
#   OUTDIR/src            the tree (multi-MiB files, empty files, deep dirs, Unicode names in
#                         NFC and NFD, a name with ':' and one with a '/'-free emoji)
#   OUTDIR/hybrid.iso     `xorriso -as mkisofs -hfsplus` hybrid image: ISO 9660 + an Apple
#                         partition map whose Apple_HFS partition holds the HFS+ tree
#   OUTDIR/hfsplus.img    that Apple_HFS partition alone (a bare HFS+ volume)
#   OUTDIR/gpt.img        a GPT disk (sfdisk) whose partition 2 is of type Apple HFS/HFS+
#                         (48465300-0000-11AA-AA11-00306543ECAC) and holds hfsplus.img
#   OUTDIR/real/*.img     the macOS-made images of ../shared/hw-fixtures/hfsplus (zstd -d),
#                         when that directory exists (HFSPLUS_REAL_DIR overrides it)
#
# No root. Needs xorriso, sfdisk (fdisk) and zstd. Debian bookworm has no mkfs.hfsplus
# (hfsprogs) and the kernel here has no hfsplus module, so no image is made by mkfs or filled
# through a mount; xorriso's images have 2 KiB blocks, no journal and no attributes B-tree.
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
out=$1
for tool in xorriso sfdisk zstd; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (install xorriso, fdisk and zstd)" >&2
        exit 1
    }
done
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
src=$out/src
rm -rf "$src" "$out/hybrid.iso" "$out/hfsplus.img" "$out/gpt.img" "$out/real"

# The tree. Content is pseudo-random but fixed (seeded), so failures replay.
mkdir -p "$src/docs/deep/er/still" "$src/empty-dir" "$src/media"
printf 'Hello, HFS+\n' >"$src/hello.txt"
: >"$src/empty.txt"
head -c 4095 /dev/zero | tr '\0' 'a' >"$src/docs/block-minus-one.txt"
head -c 2048 /dev/zero | tr '\0' 'b' >"$src/docs/one-block.txt"
openssl_like() { # bytes seed: deterministic bytes without openssl
    awk -v n="$1" -v seed="$2" 'BEGIN { srand(seed); for (i = 0; i < n; i += 64) { s = ""; for (j = 0; j < 64 && i + j < n; j++) s = s sprintf("%c", 32 + int(rand() * 95)); printf "%s", s } }'
}
openssl_like 3145731 1 >"$src/media/three-mib.bin"
openssl_like 9437184 2 >"$src/media/nine-mib.bin"
openssl_like 100000 3 >"$src/docs/deep/er/still/deep.txt"
# NFC input (xorriso stores it decomposed, as macOS does) and NFD input (stored as is).
printf 'nfc\n' >"$src/$(printf 'caf\xc3\xa9').txt"
printf 'nfd\n' >"$src/$(printf 'nai\xcc\x88ve').txt"
printf 'emoji\n' >"$src/docs/$(printf '\xf0\x9f\x98\x80 smile').txt"
printf 'colon\n' >"$src/docs/a:b.txt"
for i in $(seq 1 300); do
    printf 'file %d\n' "$i" >"$src/docs/many-$i.txt"
done
ln "$src/docs/one-block.txt" "$src/media/hard-link.txt"
ln -s ../hello.txt "$src/docs/link-to-hello"
mkfifo "$src/docs/fifo"
# Fixed mtimes (HFS+ keeps whole seconds).
find "$src" -exec touch -h -d '2024-02-29 12:34:56 UTC' {} +
touch -d '2038-01-19 03:14:09 UTC' "$src/hello.txt"

xorriso -as mkisofs -quiet -hfsplus -V HFSTEST -o "$out/hybrid.iso" "$src" >/dev/null 2>&1

# The Apple_HFS entry of the partition map: 512-byte map entries from byte 512, start and
# count (512-byte blocks) at offsets 8 and 12.
start=
count=
for i in $(seq 1 16); do
    entry=$(od -A n -t x1 -j $((512 * i)) -N 64 "$out/hybrid.iso" | tr -d ' \n')
    [ "${entry:0:4}" = "504d" ] || break
    type=$(printf '%s' "${entry:96:18}")
    if [ "$type" = "4170706c655f484653" ]; then # "Apple_HFS"
        start=$((16#${entry:16:8}))
        count=$((16#${entry:24:8}))
        break
    fi
done
if [ -z "$start" ]; then
    echo "$0: no Apple_HFS partition in $out/hybrid.iso" >&2
    exit 1
fi
dd if="$out/hybrid.iso" of="$out/hfsplus.img" bs=512 skip="$start" count="$count" status=none

# A GPT disk: a 1 MiB FAT-less data partition, then the HFS+ volume.
sectors=$(((count + 2048 + 2048 + 2047) / 2048 * 2048 + 2048))
truncate -s $((sectors * 512)) "$out/gpt.img"
sfdisk --quiet "$out/gpt.img" <<EOF
label: gpt
start=2048, size=2048, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="data"
start=4096, size=$count, type=48465300-0000-11AA-AA11-00306543ECAC, name="Macintosh HD"
EOF
dd if="$out/hfsplus.img" of="$out/gpt.img" bs=512 seek=4096 conv=notrunc status=none

real=${HFSPLUS_REAL_DIR:-$here/../../shared/hw-fixtures/hfsplus}
if [ -d "$real" ]; then
    mkdir -p "$out/real"
    for f in "$real"/*.img.zst; do
        [ -e "$f" ] || continue
        zstd -q -d -c "$f" >"$out/real/$(basename "$f" .zst)"
    done
fi
