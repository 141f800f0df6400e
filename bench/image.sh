#!/usr/bin/env bash
# bench/image.sh: Station's image imports (`stationctl load`, release build), one run:
#
#   (a) EBS: Station against coldsnap (crates.io `coldsnap`, the AWS Labs EBS direct API
#       uploader) on the same 4 GiB image, half of it zeros (16 x 128 MiB random regions
#       between 16 x 128 MiB of zeros), each into a fresh moto behind the strict proxy
#       tests/ebs/proxy.py (both tools' blocks, ChangedBlocksCount and LINEAR aggregate are
#       checked). coldsnap runs with --omit-zero-blocks, so both send the same 4096 blocks
#       (Station never sends an all-zero block). Station runs twice: with its default
#       `transfer.ebs_verify: sampled` (every 64th block read back after CompleteSnapshot) and
#       as station-all with `all` (every block); coldsnap reads nothing back.
#   (b) Glacier: Station into tests/glacier/server.py (moto holds the log bucket) for a
#       ${BENCH_GLACIER_GIB:-1} GiB random image, against the image's sequential read rate
#       (`dd if=IMG of=/dev/null bs=8M`).
#
# MB/s is the image size (10^6 bytes) over the wall time of the whole command. The page cache
# is dropped before each run. The CPU seconds of every process (the tool, moto, the proxy,
# the Glacier server) are printed too: they show where the time goes.
#
# Run as root (drop_caches). Needs the venv from scripts/setup (moto, awscli). coldsnap:
# $COLDSNAP if set, else `coldsnap` on the PATH, else `cargo install coldsnap --locked` into a
# temporary CARGO_HOME inside the work directory (a few minutes). Everything it makes lives in
# one directory under /var/tmp, removed at the end.
#
#   bench/image.sh                 # both
#   BENCH_PARTS=ebs bench/image.sh # or glacier
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

COLDSNAP_VERSION=0.12.0
parts=${BENCH_PARTS:-ebs glacier}
glacier_gib=${BENCH_GLACIER_GIB:-1}

[ "$(id -u)" = 0 ] || { echo "bench/image.sh: run as root" >&2; exit 1; }
venv=${STATION_VENV:-$repo/.venv}
[ -x "$venv/bin/moto_server" ] && [ -x "$venv/bin/aws" ] \
    || { echo "bench/image.sh: no moto/awscli in $venv: run scripts/setup" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench/image.sh: needs /usr/bin/time (Debian: time)" >&2; exit 1; }
aws=$venv/bin/aws
py=$venv/bin/python

work=$(mktemp -d /var/tmp/station-image-bench.XXXXXX)
pids=()
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT

echo "bench: building stationctl (release)" >&2
cargo build -q --release --locked -p station --bin stationctl
target=${CARGO_TARGET_DIR:-$repo/target}
stationctl=$target/release/stationctl

coldsnap=${COLDSNAP:-$(command -v coldsnap || true)}
if [[ " $parts " == *" ebs "* ]] && [ -z "$coldsnap" ]; then
    echo "bench: installing coldsnap $COLDSNAP_VERSION (crates.io) into $work/cargo" >&2
    CARGO_HOME=$work/cargo CARGO_TARGET_DIR=$work/cargo-target \
        cargo install -q --locked --version "$COLDSNAP_VERSION" coldsnap
    coldsnap=$work/cargo/bin/coldsnap
    rm -rf "$work/cargo-target"
fi

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_EBS

free_port() {
    "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # PORT PID LOG
    for _ in $(seq 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { cat "$3" >&2; exit 1; }
        sleep 0.1
    done
    echo "bench: nothing listens on $1" >&2; exit 1
}
# The CPU seconds (user + system, all threads, reaped children) a running process used so far.
cpu_of() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13 + $14 + $15) / hz }' "/proc/$1/stat"
}
start_moto() { # sets moto_port moto_pid
    moto_port=$(free_port)
    "$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto-$moto_port.log" 2>&1 &
    moto_pid=$!
    pids+=("$moto_pid")
    wait_port "$moto_port" "$moto_pid" "$work/moto-$moto_port.log"
}
start_proxy() { # sets proxy_port proxy_pid
    local out=$work/proxy-$moto_port.out
    "$py" tests/ebs/proxy.py --port 0 --upstream "http://127.0.0.1:$moto_port" \
        --require-aggregate >"$out" 2>"$work/proxy-$moto_port.log" &
    proxy_pid=$!
    pids+=("$proxy_pid")
    for _ in $(seq 600); do
        grep -q '^LISTENING ' "$out" 2>/dev/null && break
        kill -0 "$proxy_pid" 2>/dev/null || { cat "$work/proxy-$moto_port.log" >&2; exit 1; }
        sleep 0.1
    done
    proxy_port=$(sed -n 's/^LISTENING 127.0.0.1://p' "$out")
    [ -n "$proxy_port" ] || { echo "bench: the proxy did not start" >&2; exit 1; }
}
stop() { kill "$@" 2>/dev/null; wait "$@" 2>/dev/null || true; }

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
# N MiB of pseudo-random bytes (AES-CTR keystream: fast, incompressible).
random_mib() { # N SEED
    { openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$2" </dev/zero 2>/dev/null || true; } \
        | head -c $(($1 * 1024 * 1024))
}
time_field() { # FILE: "user+sys peak-RSS-MiB" from /usr/bin/time -v
    awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} /Maximum resident set size/ {r=$2}
        END {printf "%.1f %.0f", u + s, r / 1024}' "$1"
}

echo "bench: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, work dir $work" >&2
echo "bench: moto $("$venv/bin/pip" show moto 2>/dev/null | awk '/^Version/ {print $2}'), $("$coldsnap" --help >/dev/null 2>&1 && echo "coldsnap $COLDSNAP_VERSION" || echo "no coldsnap"), $("$stationctl" --version 2>/dev/null || echo stationctl)" >&2

load0=$(cut -d' ' -f1-3 /proc/loadavg)
ebs_rows=()
glacier_rows=()

# --- (a) EBS.
run_ebs() { # TOOL
    local tool=$1 t0 t1 snapshot blocks cpu_moto0 cpu_proxy0 tf
    start_moto
    start_proxy
    "$aws" s3 mb s3://iemanifest-bucket --endpoint-url "http://127.0.0.1:$moto_port" >/dev/null
    tf=$work/ebs-$tool.time
    drop_caches
    cpu_moto0=$(cpu_of "$moto_pid")
    cpu_proxy0=$(cpu_of "$proxy_pid")
    t0=$(now)
    case $tool in
        station|station-all)
            local verify=sampled
            [ "$tool" = station-all ] && verify=all
            printf 'data_dir: %s\ntransfer:\n  ebs_verify: %s\ntargets:\n  us-east-1:\n    endpoint: http://127.0.0.1:%s\n    ebs_endpoint: http://127.0.0.1:%s\n' \
                "$work/data-$tool" "$verify" "$moto_port" "$proxy_port" >"$work/$tool.yaml"
            /usr/bin/time -v -o "$tf" "$stationctl" --config "$work/$tool.yaml" load \
                --device "$work/ebs.img" \
                --manifest pipelines/testdata/manifests/guide/ebs-import-reference.yaml \
                --job-id "BENCH$RANDOM" >"$work/$tool.out" 2>&1 \
                || { tail "$work/$tool.out" "$work/proxy-$moto_port.log" >&2; exit 1; }
            ;;
        coldsnap)
            /usr/bin/time -v -o "$tf" "$coldsnap" --endpoint "http://127.0.0.1:$proxy_port" \
                --region us-east-1 upload --omit-zero-blocks --no-progress \
                "$work/ebs.img" >"$work/$tool.out" 2>&1 \
                || { tail "$work/$tool.out" "$work/proxy-$moto_port.log" >&2; exit 1; }
            ;;
    esac
    t1=$(now)
    local cpu_moto cpu_proxy
    cpu_moto=$(echo "$(cpu_of "$moto_pid") $cpu_moto0" | awk '{printf "%.1f", $1 - $2}')
    cpu_proxy=$(echo "$(cpu_of "$proxy_pid") $cpu_proxy0" | awk '{printf "%.1f", $1 - $2}')
    # The proxy checked the completion; moto holds exactly the non-zero blocks.
    snapshot=$(sed -n 's/^ebs-proxy: completed \(snap-[^:]*\): blocks=[0-9]* aggregate=ok$/\1/p' \
        "$work/proxy-$moto_port.log")
    [ -n "$snapshot" ] || { echo "bench: $tool: no checked completion" >&2; cat "$work/proxy-$moto_port.log" >&2; exit 1; }
    blocks=$("$aws" ebs list-snapshot-blocks --snapshot-id "$snapshot" \
        --endpoint-url "http://127.0.0.1:$moto_port" --query 'length(Blocks)' --output text)
    [ "$blocks" = "$ebs_blocks" ] || { echo "bench: $tool: $blocks blocks, want $ebs_blocks" >&2; exit 1; }
    stop "$proxy_pid" "$moto_pid"
    ebs_rows+=("$tool $(echo "$t0 $t1 $ebs_bytes" | awk '{s=$2-$1; printf "%.2f %.1f", s, $3/s/1e6}') $(time_field "$tf") $cpu_moto $cpu_proxy")
}

if [[ " $parts " == *" ebs "* ]]; then
    echo "bench: making the EBS image (4 GiB, half zeros)" >&2
    for i in $(seq 0 15); do
        random_mib 128 "ebs-$i"
        head -c $((128 * 1024 * 1024)) /dev/zero
    done >"$work/ebs.img"
    ebs_bytes=$(stat -c %s "$work/ebs.img")
    ebs_blocks=$((16 * 128 * 2))
    for tool in coldsnap station station-all; do
        echo "bench: (ebs) $tool" >&2
        run_ebs "$tool"
    done
    rm -f "$work/ebs.img"
fi

# --- (b) Glacier.
if [[ " $parts " == *" glacier "* ]]; then
    echo "bench: making the Glacier image ($glacier_gib GiB, random)" >&2
    random_mib $((glacier_gib * 1024)) glacier >"$work/glacier.img"
    glacier_bytes=$(stat -c %s "$work/glacier.img")
    start_moto
    "$aws" s3 mb s3://log-bucket --endpoint-url "http://127.0.0.1:$moto_port" >/dev/null
    gport=$(free_port)
    mkdir -p "$work/glacier-store"
    "$py" tests/glacier/server.py --port "$gport" --store "$work/glacier-store" \
        >"$work/glacier.out" 2>"$work/glacier.log" &
    gpid=$!
    pids+=("$gpid")
    wait_port "$gport" "$gpid" "$work/glacier.log"
    "$aws" glacier create-vault --account-id - --vault-name MyGlacierVault \
        --endpoint-url "http://127.0.0.1:$gport" >/dev/null
    sed 's/logBucket: myBucket/logBucket: log-bucket/' \
        pipelines/testdata/manifests/guide/glacier-import-reference.yaml >"$work/glacier.yaml"
    printf 'data_dir: %s\ntargets:\n  us-east-1:\n    endpoint: http://127.0.0.1:%s\n    glacier_endpoint: http://127.0.0.1:%s\n' \
        "$work/data-glacier" "$moto_port" "$gport" >"$work/glacier-config.yaml"
    echo "bench: (glacier) station" >&2
    drop_caches
    g_cpu0=$(cpu_of "$gpid")
    t0=$(now)
    /usr/bin/time -v -o "$work/glacier.time" "$stationctl" --config "$work/glacier-config.yaml" \
        load --device "$work/glacier.img" --manifest "$work/glacier.yaml" --job-id GLBENCH \
        >"$work/glacier-station.out" 2>&1 \
        || { tail "$work/glacier-station.out" "$work/glacier.log" >&2; exit 1; }
    t1=$(now)
    g_cpu=$(echo "$(cpu_of "$gpid") $g_cpu0" | awk '{printf "%.1f", $1 - $2}')
    # The server's own time for CompleteMultipartUpload (it re-reads, re-hashes and assembles
    # the stored parts) and the sum of its time on the part uploads.
    g_complete=$(awk '/ POST .*multipart-uploads\/[^ ]+ -> 201/ {gsub(/[()s]/, "", $NF); print $NF}' "$work/glacier.log" | tail -1)
    g_parts=$(awk '/ PUT .*multipart-uploads\/[^ ]+ -> 204/ {gsub(/[()s]/, "", $NF); t += $NF; n++} END {printf "%d parts, %.1f", n, t}' "$work/glacier.log")
    archive=$(find "$work/glacier-store/MyGlacierVault" -maxdepth 1 -type f ! -name '*.*' | head -1)
    [ "$(stat -c %s "$archive")" = "$glacier_bytes" ] || { echo "bench: the archive has the wrong size" >&2; exit 1; }
    glacier_rows+=("station $(echo "$t0 $t1 $glacier_bytes" | awk '{s=$2-$1; printf "%.2f %.1f", s, $3/s/1e6}') $(time_field "$work/glacier.time") $g_cpu")
    stop "$gpid" "$moto_pid"
    rm -rf "$work/glacier-store"
    echo "bench: (glacier) dd" >&2
    drop_caches
    t0=$(now)
    dd if="$work/glacier.img" of=/dev/null bs=8M status=none
    t1=$(now)
    glacier_rows+=("dd $(echo "$t0 $t1 $glacier_bytes" | awk '{s=$2-$1; printf "%.2f %.1f", s, $3/s/1e6}') - - -")
    rm -f "$work/glacier.img"
fi

echo
echo "bench: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM; moto $("$venv/bin/pip" show moto 2>/dev/null | awk '/^Version/ {print $2}'); coldsnap $COLDSNAP_VERSION; load average at start $load0, at end $(cut -d' ' -f1-3 /proc/loadavg)"
if [ ${#ebs_rows[@]} -gt 0 ]; then
    echo "EBS: 4 GiB image, 2 GiB of it non-zero ($ebs_blocks blocks sent), moto behind tests/ebs/proxy.py"
    printf '%-16s %8s %8s %10s %8s %9s %9s %10s\n' tool seconds MB/s "x coldsnap" "tool CPU" "peak RSS" "moto CPU" "proxy CPU"
    base=$(printf '%s\n' "${ebs_rows[@]}" | awk '$1 == "coldsnap" {print $3}')
    printf '%s\n' "${ebs_rows[@]}" | awk -v base="$base" '{
        printf "%-16s %8.2f %8.1f %10.2f %7.1fs %5d MiB %8.1fs %9.1fs\n", $1, $2, $3, $3 / base, $4, $5, $6, $7
    }'
    printf '%s\n' "${ebs_rows[@]}" | awk -v base="$base" '$1 == "station" {
        ratio = $3 / base
        printf "goal: station (default ebs_verify: sampled) %.2f x coldsnap (goal >= 1.0): %s\n", ratio, (ratio >= 1.0 ? "met" : "NOT met")
    }'
fi
if [ ${#glacier_rows[@]} -gt 0 ]; then
    echo
    echo "Glacier: $glacier_gib GiB random image into tests/glacier/server.py"
    printf '%-16s %8s %8s %10s %8s %9s %11s\n' what seconds MB/s "x dd read" "tool CPU" "peak RSS" "server CPU"
    base=$(printf '%s\n' "${glacier_rows[@]}" | awk '$1 == "dd" {print $3}')
    printf '%s\n' "${glacier_rows[@]}" | awk -v base="$base" '{
        if ($1 == "dd") printf "%-16s %8.2f %8.1f %10.2f %8s %9s %11s\n", "dd bs=8M", $2, $3, 1, "-", "-", "-"
        else printf "%-16s %8.2f %8.1f %10.2f %7.1fs %5d MiB %10.1fs\n", $1, $2, $3, $3 / base, $4, $5, $6
    }'
    echo "server: UploadMultipartPart $g_parts s summed over concurrent requests; CompleteMultipartUpload (re-read, re-hash, assemble) ${g_complete}s"
fi
