#!/usr/bin/env bash
# Usage: scripts/check-disk.sh DIR GIB WHAT
# Fail with one clear line when the filesystem holding DIR has less than GIB GiB free, before pip
# starts an install it cannot finish (a half-installed environment is worse than none).
# The sizes come from measured environments: the CUDA builds of torch that PyPI serves bring
# ~2.7 GiB of NVIDIA libraries into each environment. SKIP_DISK_CHECK=1 skips the check.
set -u
dir="$1"; need="$2"; what="$3"
[ "${SKIP_DISK_CHECK:-0}" = 1 ] && exit 0
avail_kib=$(df -Pk "$dir" 2>/dev/null | awk 'NR == 2 { print $4 }')
[ -n "$avail_kib" ] || exit 0  # df cannot tell: let pip try
avail_gib=$(awk -v k="$avail_kib" 'BEGIN { printf "%.1f", k / 1048576 }')
if awk -v k="$avail_kib" -v g="$need" 'BEGIN { exit !(k < g * 1048576) }'; then
  echo "error: $what needs about $need GiB free on the disk holding $(cd "$dir" && pwd); $avail_gib GiB is free." \
       "Free some space (or set SKIP_DISK_CHECK=1 to try anyway)." >&2
  exit 1
fi
echo "disk: $avail_gib GiB free for $what (needs about $need GiB)"
