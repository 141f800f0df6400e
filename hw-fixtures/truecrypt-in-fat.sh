#!/usr/bin/env bash
# Builds OUTDIR/fat.img: a FAT32 filesystem (mkfs.vfat + mcopy, no mount, no root) holding
# CONTAINER as JOB1234.tc, the way a customer ships a TrueCrypt container on a device's
# filesystem. CONTAINER is any file (tests pass a third-party volume from
# ../shared/hw-fixtures/truecrypt or one we created). Needs dosfstools and mtools.
set -euo pipefail
if [ "$#" -ne 2 ]; then
    echo "usage: $0 OUTDIR CONTAINER" >&2
    exit 2
fi
out=$1 container=$2
for tool in mkfs.vfat mcopy; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (install dosfstools and mtools)" >&2
        exit 1
    }
done
mkdir -p "$out"
img=$out/fat.img
# FAT32 needs 65,525 clusters: 33 MiB with 512-byte clusters.
mkfs.vfat -F 32 -s 1 -n CONTAINER -C "$img" 33792 >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -i "$img" "$container" ::/JOB1234.tc
