#!/usr/bin/env bash
# Read bench: the MD5 of every file of a 1 GiB ext4 image, a 1 GiB exFAT image and a 1 GiB
# NTFS image, through our userspace reader (`stationctl inspect IMAGE --files`) and through
# `md5sum` on the kernel's view of the same image (ext4: `mount -o loop,ro`; exFAT:
# `mount.exfat-fuse -o ro` on a loop device; NTFS: `ntfs-3g -o ro` on the image file), in one
# run, with the page cache dropped before every pass (`sync; echo 3 > /proc/sys/vm/drop_caches`).
#
#   bench/read.sh [FS...]      FS: ext4, exfat, ntfs (default: all three)
#
# Each image holds three large files (384, 256 and 192 MiB) and 3,000 small ones (1 to
# 32 KiB, in 30 directories), random content. Printed: MB/s (10^6 bytes per second) for our
# reader and the kernel's, the ratio (ours / kernel) for the large files, the small files and
# all of them, and the reads our reader issued by power-of-two size (`STATION_READ_STATS=1`,
# see station/src/inspect.rs), with reads per MiB of the large files. The goal (issue 5):
# ratio >= 1.0 for large files, and at most one read per MiB of a large file; for NTFS (issue
# 10) ratio >= 1.5 against ntfs-3g for large files. The NTFS image is filled through ntfs-3g
# (`cp -a`), so the peer is the same driver that wrote it.
#
# Our times come from the same run: "all" is the wall-clock time of `stationctl inspect`,
# "large" is the time it spent hashing files of at least 1 MiB (reads included), "small" is
# the rest (walk, metadata and the small files). The kernel's are two `md5sum` passes, the
# large files then the small ones, each after dropping caches; "all" is their sum. Both
# listings' MD5s are compared, so a wrong read fails the bench.
#
# Runs as root (mount, loop devices, drop_caches). Needs cargo, e2fsprogs (mkfs.ext4),
# exfatprogs (mkfs.exfat), exfat-fuse (mount.exfat-fuse), ntfs-3g (mkntfs, ntfs-3g), util-linux (losetup, mount,
# mountpoint), coreutils, findutils and awk; installs nothing. The images (about 3 GiB with the
# source tree) are built in a temporary directory under /var/tmp, removed at the end. The
# binary is built with `cargo build --release` into the repository's target directory (or
# $CARGO_TARGET_DIR when set, as cargo does).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" -ne 0 ]; then
    echo "$0: must run as root (mount, loop devices, drop_caches)" >&2
    exit 1
fi
filesystems=("$@")
if [ "${#filesystems[@]}" -eq 0 ]; then
    filesystems=(ext4 exfat ntfs)
fi
for fs in "${filesystems[@]}"; do
    case $fs in
        ext4 | exfat | ntfs) ;;
        *)
            echo "usage: $0 [FS...]   (FS: ext4, exfat, ntfs)" >&2
            exit 2
            ;;
    esac
done
wants() { case " ${filesystems[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for tool in cargo mkfs.ext4 mkfs.exfat mount.exfat-fuse mkntfs ntfs-3g losetup mount umount \
    mountpoint md5sum find xargs awk; do
    command -v "$tool" >/dev/null || {
        echo "$0: $tool not found (needs cargo, e2fsprogs, exfatprogs, exfat-fuse, ntfs-3g, util-linux)" >&2
        exit 1
    }
done
[ -e /dev/fuse ] || {
    echo "$0: /dev/fuse is missing (FUSE is not available)" >&2
    exit 1
}

(cd "$repo" && cargo build --release --quiet --bin stationctl)
stationctl=${CARGO_TARGET_DIR:-$repo/target}/release/stationctl
case "$stationctl" in /*) ;; *) stationctl=$repo/$stationctl ;; esac

work=$(mktemp -d /var/tmp/station-bench.XXXXXX)
mnt=$work/mnt
dev=
cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then
        umount "$mnt" || echo "$0: could not unmount $mnt" >&2
    fi
    if [ -n "$dev" ]; then
        losetup -d "$dev" || echo "$0: could not detach $dev" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$mnt"

drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

now() { date +%s.%N; }

# The source tree: three large files and 3,000 small ones.
src=$work/src
mkdir -p "$src/large"
for spec in 1:384 2:256 3:192; do
    head -c $((${spec#*:} << 20)) /dev/urandom >"$src/large/big-${spec%%:*}.bin"
done
for d in $(seq -w 0 29); do
    mkdir -p "$src/small/dir-$d"
    for f in $(seq -w 0 99); do
        head -c $(((RANDOM % 32 + 1) * 1024 - RANDOM % 1024)) /dev/urandom \
            >"$src/small/dir-$d/file-$f.dat"
    done
done

# ext4: made from the tree by mke2fs -d (no mount needed).
if wants ext4; then
    mkfs.ext4 -q -F -m 0 -L bench -d "$src" "$work/ext4.img" 1G >/dev/null
fi
# exFAT: filled through exfat-fuse on a loop device (no Debian tool fills it otherwise).
if wants exfat; then
    truncate -s 1G "$work/exfat.img"
    mkfs.exfat -L bench "$work/exfat.img" >/dev/null
    dev=$(losetup -f --show "$work/exfat.img")
    mount.exfat-fuse "$dev" "$mnt" >/dev/null
    cp -a "$src"/. "$mnt"/
    umount "$mnt"
    losetup -d "$dev"
    dev=
fi
# NTFS: filled through ntfs-3g on the image file.
if wants ntfs; then
    truncate -s 1G "$work/ntfs.img"
    mkntfs -F -Q -q -L bench "$work/ntfs.img" >/dev/null 2>&1
    ntfs-3g "$work/ntfs.img" "$mnt"
    cp -a "$src"/. "$mnt"/
    umount "$mnt"
fi

(cd "$src" && find . -type f -size +1023k -printf '%P\0') >"$work/large.list"
(cd "$src" && find . -type f -size -1024k -printf '%P\0') >"$work/small.list"
sum_sizes() { (cd "$src" && xargs -0 stat -c %s <"$1" | awk '{ s += $1 } END { print s + 0 }'); }
count() { tr -cd '\0' <"$1" | wc -c; }
large_bytes=$(sum_sizes "$work/large.list")
small_bytes=$(sum_sizes "$work/small.list")
large_files=$(count "$work/large.list")
small_files=$(count "$work/small.list")

# kernel_pass LIST OUT: md5sum of the files in LIST under $mnt, appended to OUT; prints
# seconds.
kernel_pass() {
    local list=$1 out=$2 t0 t1
    drop_caches
    t0=$(now)
    (cd "$mnt" && xargs -0 md5sum -- <"$list") >>"$out"
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# bench FS: runs both readers on $work/FS.img; sets the globals below.
bench() {
    local fs=$1 img=$work/$1.img t0 t1
    drop_caches
    t0=$(now)
    STATION_READ_STATS=1 "$stationctl" inspect "$img" --files >"$work/$fs.ours" 2>"$work/$fs.stats"
    t1=$(now)
    ours_all=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    ours_large=$(sed -n 's/^read stats: files >= 1 MiB: .* in \([0-9.]*\) s, .*/\1/p' "$work/$fs.stats")
    ours_small=$(awk -v a="$ours_all" -v b="$ours_large" 'BEGIN { printf "%.3f", a - b }')

    if [ "$fs" = ext4 ]; then
        mount -o loop,ro "$img" "$mnt"
    elif [ "$fs" = ntfs ]; then
        ntfs-3g -o ro "$img" "$mnt"
    else
        dev=$(losetup -r -f --show "$img")
        mount.exfat-fuse -o ro "$dev" "$mnt" >/dev/null
    fi
    : >"$work/$fs.kernel"
    kernel_large=$(kernel_pass "$work/large.list" "$work/$fs.kernel")
    kernel_small=$(kernel_pass "$work/small.list" "$work/$fs.kernel")
    kernel_all=$(awk -v a="$kernel_large" -v b="$kernel_small" 'BEGIN { printf "%.3f", a + b }')
    umount "$mnt"
    if [ -n "$dev" ]; then
        losetup -d "$dev"
        dev=
    fi

    # The same MD5 for every file, both ways (the bench's names need no escaping).
    awk '$4 == "file" { print $1 "  " substr($0, index($0, " file ") + 6) }' "$work/$fs.ours" |
        LC_ALL=C sort >"$work/$fs.ours.md5"
    LC_ALL=C sort "$work/$fs.kernel" >"$work/$fs.kernel.md5"
    if ! cmp -s "$work/$fs.ours.md5" "$work/$fs.kernel.md5"; then
        echo "$0: $fs: our MD5s differ from md5sum's:" >&2
        diff "$work/$fs.ours.md5" "$work/$fs.kernel.md5" | head -20 >&2
        exit 1
    fi
}

# row FS WHAT FILES BYTES OURS_S KERNEL_S
row() {
    awk -v fs="$1" -v what="$2" -v files="$3" -v bytes="$4" -v o="$5" -v k="$6" 'BEGIN {
        om = bytes / o / 1e6; km = bytes / k / 1e6
        printf "%-6s %-6s %6d %12d %8.3f %9.1f %8.3f %9.1f %6.2fx\n",
            fs, what, files, bytes, o, om, k, km, om / km
    }'
}

kernel_name() {
    case $1 in
        ext4) echo "kernel ext4, mount -o loop,ro" ;;
        ntfs) echo "ntfs-3g on the image file, ro" ;;
        *) echo "exfat-fuse on a loop device, ro" ;;
    esac
}

echo "station read bench: $(uname -r), $(nproc) CPUs, load average $(cut -d" " -f1-3 /proc/loadavg); images in $work"
echo "ours: $stationctl inspect IMAGE --files (O_DIRECT, 8 MiB chunks); caches dropped before every pass"
for fs in "${filesystems[@]}"; do
    bench "$fs"
    echo
    echo "== $fs ($(kernel_name "$fs")): every MD5 matches md5sum's"
    printf '%-6s %-6s %6s %12s %8s %9s %8s %9s %7s\n' \
        fs files count bytes "ours s" "ours MB/s" "kern s" "kern MB/s" ratio
    row "$fs" large "$large_files" "$large_bytes" "$ours_large" "$kernel_large"
    row "$fs" small "$small_files" "$small_bytes" "$ours_small" "$kernel_small"
    row "$fs" all "$((large_files + small_files))" "$((large_bytes + small_bytes))" \
        "$ours_all" "$kernel_all"
    sed -n 's/^read stats: /  /p' "$work/$fs.stats"
done
