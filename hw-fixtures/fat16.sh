#!/usr/bin/env bash
# Builds OUTDIR/src and OUTDIR/fat16.img: see fat.sh.
set -euo pipefail
if [ "$#" -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
exec "$(dirname "$0")/fat.sh" "$1" 16
