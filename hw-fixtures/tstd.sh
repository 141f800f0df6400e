#!/usr/bin/env bash
# Builds the guide's import example disk (Appendix B, TSTD1-TSTD3): an ext4 image with the
# SIGNATURE file and the six example files, and the tree it was made from.
#
#   hw-fixtures/tstd.sh OUTDIR [SIGNATURE-FILE]
#
# Writes OUTDIR/src and OUTDIR/tstd.img (16 MiB). The names are those of the guide's logs
# (Notice.txt, README.txt, chewie.GIF, chewie.TIF); the contents are random, so each file has
# its own MD5. Needs e2fsprogs; installs nothing.
set -euo pipefail
out=${1:?usage: tstd.sh OUTDIR [SIGNATURE-FILE]}
command -v mkfs.ext4 >/dev/null || { echo "tstd.sh: mkfs.ext4 (e2fsprogs) is missing" >&2; exit 1; }
src=$out/src
rm -rf "$src"
mkdir -p "$src/images/resources"
if [ -n "${2:-}" ]; then
    cp "$2" "$src/SIGNATURE"
else
    printf 'version:2.0\nsigningMethod:HmacSHA1\njobId:TSTD1\nsignature:AAAAAAAAAAAAAAAAAAAAAAAAAAA=\n' > "$src/SIGNATURE"
fi
head -c 4325 /dev/urandom > "$src/Notice.txt"
head -c 1000 /dev/urandom > "$src/README.txt"
head -c 10845 /dev/urandom > "$src/images/wookie1.jpg"
head -c 555 /dev/urandom > "$src/images/chewie.GIF"
head -c 17118 /dev/urandom > "$src/images/resources/chewie.psd"
head -c 1488 /dev/urandom > "$src/images/chewie.TIF"
touch -d '2009-02-03 21:57:43 UTC' "$src"/* "$src"/images/* "$src"/images/resources/*
rm -f "$out/tstd.img"
mkfs.ext4 -q -F -L TSTD -d "$src" "$out/tstd.img" 16M
