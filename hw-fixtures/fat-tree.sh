#!/usr/bin/env bash
# Builds the source tree the FAT and exFAT fixtures are made from.
#
#   hw-fixtures/fat-tree.sh DIR [--emoji]
#
# DIR must not exist. The tree has nested directories, long names (one of 200 characters),
# names that need the NT lowercase flags or a long name, Unicode names in the BMP, an empty
# file, a file of 3 MiB + 12,345 bytes and a directory of 600 small files. `--emoji` adds a name
# outside the BMP (mtools drops such characters, so only the exFAT fixture uses it). Content is
# deterministic; only mtimes depend on when it runs (a few are set to fixed dates).
set -euo pipefail

if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
    echo "usage: $0 DIR [--emoji]" >&2
    exit 2
fi
src=$1
emoji=${2:-}
if [ -n "$emoji" ] && [ "$emoji" != "--emoji" ]; then
    echo "$0: unknown option '$emoji'" >&2
    exit 2
fi
for tool in seq truncate touch head; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (install coreutils)" >&2
        exit 1
    }
done
mkdir "$src"

# Nested directories.
mkdir -p "$src/a/b/c/d/e/f"
echo "top" >"$src/a/top.txt"
echo "deep" >"$src/a/b/c/d/e/f/deep.txt"
seq 1 2000 >"$src/a/b/mid.txt"

# Short names with every case combination: plain 8.3 upper case, NT lowercase flags, and
# mixed case (which needs a long name).
echo "readme" >"$src/README.TXT"
echo "lower" >"$src/lower.txt"
echo "mixed" >"$src/Mixed.Txt"
mkdir "$src/UPPERDIR" "$src/lowerdir"
echo "in upper" >"$src/UPPERDIR/FILE.DAT"
echo "in lower" >"$src/lowerdir/file.dat"

# Long names.
echo "long" >"$src/A long file name with spaces, commas and more than 8.3 characters.text"
long200=$(printf 'n%.0s' $(seq 1 196)).txt
echo "two hundred" >"$src/$long200"
echo "dots" >"$src/several.dots.in.name.tar.gz"

# Unicode names in the BMP.
echo "café" >"$src/café 日本語.txt"
echo "angstrom" >"$src/Ångström-Ж.txt"
mkdir "$src/Ωmega dir"
echo "greek" >"$src/Ωmega dir/αβγ.txt"
if [ -n "$emoji" ]; then
    echo "emoji" >"$src/emoji 😀 name.txt"
    mkdir "$src/dir 🎉"
    echo "party" >"$src/dir 🎉/inside 😀.txt"
fi

# An empty file and an empty directory.
: >"$src/empty.txt"
mkdir "$src/emptydir"

# A file of a few MiB plus odd bytes.
seq 1 500000 >"$src/big.bin"
truncate -s $((3 * 1024 * 1024 + 12345)) "$src/big.bin"

# A directory of 600 files of 1..3,000 bytes.
mkdir "$src/many"
seq 1 1000 >"$src/many.blob"
for i in $(seq 1 600); do
    head -c $(((i * 977) % 3000 + 1)) "$src/many.blob" >"$src/many/file-$i.dat"
done
rm "$src/many.blob"

# A few fixed times inside FAT's range (1980..2107).
touch -d '1985-06-01 12:00:00' "$src/a/top.txt"
touch -d '2001-09-09 01:46:40' "$src/README.TXT"
touch -d '2040-02-29 23:59:58' "$src/big.bin"
