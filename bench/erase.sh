#!/usr/bin/env bash
# bench/erase.sh: the erase pipeline's write and verify rates against dd on the same loop
# device, in the same run. Run as root. DESTROYS nothing but its own scratch file.
#
#   bench/erase.sh [SIZE] [RUNS]     SIZE for truncate (default 4G), RUNS (default 2)
#
# The loop device's backing file lives in $BENCH_DIR (default /var/tmp), which must be a real
# disk, not tmpfs. The loop device uses --direct-io=on: without it the loop driver writes into
# the backing file's page cache, so dd (which never flushes) would be timed against memory
# while the erase (which flushes every 256 MiB and at the end, as it must) is timed against
# the disk. With direct I/O both reach the disk, like a customer's drive. Each run erases
# (write+flush, then read-back of every byte), then runs
#   dd if=/dev/zero of=LOOP bs=8M oflag=direct
#   dd if=LOOP of=/dev/null bs=8M iflag=direct
# and the totals over all runs give MB/s and the ratios (ours/dd; goal >= 0.95).
set -euo pipefail

size=${1:-4G}
runs=${2:-2}
dir=${BENCH_DIR:-/var/tmp}
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

fstype=$(df --output=fstype "$dir" | tail -1 | tr -d ' ')
if [[ $fstype == tmpfs || $fstype == ramfs ]]; then
    echo "bench: $dir is $fstype; set BENCH_DIR to a directory on a real disk" >&2
    exit 1
fi

echo "bench: building the erase example (release)" >&2
cargo build -q --release --locked -p station-pipelines --example erase
target=${CARGO_TARGET_DIR:-$repo/target}
eraser=$target/release/examples/erase

work=$(mktemp -d "$dir/station-erase-bench.XXXXXX")
loop=""
cleanup() {
    set +e
    [[ -n $loop ]] && losetup -d "$loop"
    rm -rf "$work"
}
trap cleanup EXIT

img=$work/disk.img
truncate -s "$size" "$img"
bytes=$(stat -c %s "$img")
# Fill the file once, so every pass overwrites allocated blocks (no pass pays for allocation)
# and the first erase has data to destroy.
echo "bench: filling $bytes bytes with random data on $fstype ($dir)" >&2
# (openssl dies of SIGPIPE when dd has enough: not an error.)
{ openssl enc -aes-128-ctr -pass pass:bench -nosalt -pbkdf2 </dev/zero 2>/dev/null || true; } |
    dd of="$img" bs=8M count=$((bytes / (8 << 20))) iflag=fullblock oflag=direct \
        conv=notrunc status=none
loop=$(losetup -f --show --direct-io=on "$img")
echo "bench: $loop over $img ($(cat /sys/block/"${loop#/dev/}"/loop/dio 2>/dev/null || echo ?) dio)" >&2

# dd's own byte count and seconds from its last line: "N bytes (...) copied, S s, R MB/s".
dd_run() {
    dd "$@" bs=8M 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $1, $(i-1) }'
}

ours_w_b=0 ours_w_s=0 ours_v_b=0 ours_v_s=0 dd_w_b=0 dd_w_s=0 dd_r_b=0 dd_r_s=0
add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.6f", a + b }'; }
mbs() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? b / s / 1e6 : 0) }'; }

printf '%-4s %-22s %10s %10s\n' run pass MB/s seconds
for run in $(seq 1 "$runs"); do
    line=$("$eraser" "$loop")
    case $line in *result=Verified*) ;; *) echo "bench: erase failed: $line" >&2; exit 1 ;; esac
    eval "$(tr ' ' '\n' <<<"$line" | grep -E '^(write|verify)_(bytes|secs)=')"
    printf '%-4s %-22s %10s %10.2f\n' "$run" "erase write+flush" "$(mbs "$write_bytes" "$write_secs")" "$write_secs"
    printf '%-4s %-22s %10s %10.2f\n' "$run" "erase verify" "$(mbs "$verify_bytes" "$verify_secs")" "$verify_secs"
    ours_w_b=$(add "$ours_w_b" "$write_bytes"); ours_w_s=$(add "$ours_w_s" "$write_secs")
    ours_v_b=$(add "$ours_v_b" "$verify_bytes"); ours_v_s=$(add "$ours_v_s" "$verify_secs")

    read -r b s < <(dd_run if=/dev/zero of="$loop" oflag=direct)
    printf '%-4s %-22s %10s %10.2f\n' "$run" "dd write oflag=direct" "$(mbs "$b" "$s")" "$s"
    dd_w_b=$(add "$dd_w_b" "$b"); dd_w_s=$(add "$dd_w_s" "$s")

    read -r b s < <(dd_run if="$loop" of=/dev/null iflag=direct)
    printf '%-4s %-22s %10s %10.2f\n' "$run" "dd read iflag=direct" "$(mbs "$b" "$s")" "$s"
    dd_r_b=$(add "$dd_r_b" "$b"); dd_r_s=$(add "$dd_r_s" "$s")
done

ow=$(mbs "$ours_w_b" "$ours_w_s") ov=$(mbs "$ours_v_b" "$ours_v_s")
dw=$(mbs "$dd_w_b" "$dd_w_s") dr=$(mbs "$dd_r_b" "$dd_r_s")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
echo
echo "device: $loop, $bytes bytes, $runs runs (totals)"
echo "write:  erase $ow MB/s, dd $dw MB/s, ratio $(ratio "$ow" "$dw") (goal >= 0.95)"
echo "verify: erase $ov MB/s, dd $dr MB/s, ratio $(ratio "$ov" "$dr") (goal >= 0.95)"
