#!/usr/bin/env bash
# MD5 bench: multi-buffer MD5 (`drivers::md5_lanes::digest_many`, the `md5_lanes` example in
# release) and our single-stream MD5 (`drivers::md5_lanes::digest`, what one file's or one
# device's MD5 costs) against one stream of md-5 (RustCrypto) and OpenSSL (`openssl speed -evp
# md5`, 16 KiB blocks), all pinned to one core (`taskset -c 0`), in one run.
#
#   bench/md5.sh
#
# Printed, in MB/s (10^6 bytes per second) of CPU time (this thread's, from
# /proc/thread-self/schedstat, as `openssl speed` divides by CPU time), wall-clock beside it,
# each the median of three trials:
#   - md-5 and md5_lanes::digest over one 1 GiB message;
#   - md-5 and md5_lanes::digest over one 16 KiB message at a time (as `openssl speed
#     -bytes 16384`), and over 64 B, 1 KiB and 64 KiB messages, each repeated to 512 MiB;
#   - digest_many over 16 x 64 MiB (16 lanes, the AVX-512 register's width), 8 x 8 MiB (the
#     import's part size, eight parts: half the lanes idle), 16 x 8 MiB and 32 x 8 MiB (two
#     groups of 16 interleaved); each case is repeated to at least 1 GiB, three times (the
#     median is printed), and its digests are checked against md-5 once before the clock starts;
#   - openssl md5 on one stream;
# and the ratios digest_many (16 x 64 MiB) / openssl and single stream / openssl (goal ~1.0,
# one stream is one chain of dependent steps, which OpenSSL's assembly schedules as short as it
# goes; ~910 MB/s for md5_lanes::digest on the Zen 5 build host, ~690 for md-5).
#
# The kernel is chosen at run time: 16 lanes of AVX-512F where the CPU has it, else two 8-lane
# AVX2 registers (about 2.8 GB/s for 16 lanes on the Zen 5 build host, forced), else the scalar
# code one message at a time (then the ratio is about 0.8, not a multiple). One group of 16
# lanes is bound by the latency of its chain of dependent steps (4 instructions a step), so 8
# messages hash at about half the rate of 16, and 32 (two groups interleaved) ~1.6x as fast.
#
# Needs cargo, openssl and taskset (util-linux); installs nothing; needs ~1.1 GiB of memory.
# The binary is built into the repository's target directory (or $CARGO_TARGET_DIR when set, as
# cargo does).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in cargo openssl taskset; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found" >&2
        exit 1
    }
done

echo "== building md5_lanes (release)"
cargo build --release --quiet -p station-drivers --example md5_lanes
bin=${CARGO_TARGET_DIR:-target}/release/examples/md5_lanes

# Runs the example on core 0, indents its output, and leaves the CPU-time rate in $rate and the
# wall-clock one in $wall.
run() {
    local out
    out=$(taskset -c 0 "$bin" "$@")
    printf '%s\n' "$out" | sed 's/^/  /'
    rate=$(printf '%s\n' "$out" | sed -n 's/^MB\/s of cpu time: //p')
    wall=$(printf '%s\n' "$out" | sed -n 's/^MB\/s: //p')
}

echo "== md-5, one stream of 1 GiB (one core)"
run single $((1024 * 1024 * 1024))
single=$rate single_wall=$wall

echo "== md5_lanes::digest, one stream of 1 GiB (one core)"
run stream $((1024 * 1024 * 1024))
stream=$rate stream_wall=$wall

# md-5 and md5_lanes::digest over messages of 64 B, 1 KiB, 16 KiB and 64 KiB, one at a time.
declare -A msg
for bytes in 64 1024 16384 65536; do
    for impl in md-5 digest; do
        echo "== $impl, messages of $bytes bytes one at a time (one core)"
        run messages "$impl" "$bytes"
        msg[$impl,$bytes]=$rate
    done
done

echo "== digest_many, 16 x 64 MiB (one core)"
run lanes 16 $((64 * 1024 * 1024))
lanes16=$rate lanes16_wall=$wall

echo "== digest_many, 8 x 8 MiB (one core)"
run lanes 8 $((8 * 1024 * 1024))
lanes8=$rate

echo "== digest_many, 16 x 8 MiB (one core)"
run lanes 16 $((8 * 1024 * 1024))
lanes16_8=$rate

echo "== digest_many, 32 x 8 MiB (one core)"
run lanes 32 $((8 * 1024 * 1024))
lanes32_8=$rate

echo "== openssl speed -evp md5 (one core, 16 KiB blocks)"
# -mr: "+F:n:md5:...:BYTES_PER_SECOND" (the last field is the 16 KiB rate). Without -elapsed,
# openssl divides by CPU time.
openssl_rate() {
    taskset -c 0 openssl speed -mr "$@" -evp md5 -bytes 16384 -seconds 3 2>/dev/null |
        awk -F: '/^\+F:/ { printf "%.0f\n", $NF / 1e6 }' | tail -n 1
}
openssl_mb=$(openssl_rate)
openssl_wall=$(openssl_rate -elapsed)
echo "  MB/s of cpu time: $openssl_mb"
echo "  MB/s (wall clock): $openssl_wall"

ratio=$(awk -v a="$lanes16" -v b="$openssl_mb" 'BEGIN { printf "%.2f", a / b }')
ratio_wall=$(awk -v a="$lanes16_wall" -v b="$openssl_wall" 'BEGIN { printf "%.2f", a / b }')
ratio_single=$(awk -v a="$lanes16" -v b="$single" 'BEGIN { printf "%.2f", a / b }')
div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "== result (MB/s per CPU second; wall-clock figures depend on what else the machine runs)"
echo "  md-5, one stream:          $single (wall clock: $single_wall)"
echo "  md5_lanes::digest, stream: $stream (wall clock: $stream_wall)"
for bytes in 64 1024 16384 65536; do
    ours=${msg[digest,$bytes]} theirs=${msg[md-5,$bytes]}
    printf '  %-26s md-5 %s, md5_lanes::digest %s (x%s)\n' "$bytes-byte messages:" \
        "$theirs" "$ours" "$(div "$ours" "$theirs")"
done
echo "  digest_many 16 x 64 MiB:   $lanes16 (wall clock: $lanes16_wall)"
echo "  digest_many 8 x 8 MiB:     $lanes8"
echo "  digest_many 16 x 8 MiB:    $lanes16_8"
echo "  digest_many 32 x 8 MiB:    $lanes32_8"
echo "  openssl md5, one stream:   $openssl_mb (wall clock: $openssl_wall)"
echo "  ratio lanes / openssl:     $ratio (wall clock: $ratio_wall; lanes / md-5: $ratio_single)"
echo "  ratio stream / openssl:    $(div "$stream" "$openssl_mb") over 1 GiB," \
    "$(div "${msg[digest,16384]}" "$openssl_mb") over 16 KiB messages" \
    "(goal ~1.0; md-5 / openssl: $(div "$single" "$openssl_mb"))"
