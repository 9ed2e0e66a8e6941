#!/usr/bin/env bash
# On the GPU machine: unpack a payload made by tools/pack_for_device.py and time every bundle in it.
#   bash tools/cuda_device_run.sh PAYLOAD OUT [tools/cuda_measure.py options, e.g. --deadline 420]
# Writes OUT/device.json, OUT/results.json (rewritten after each workload), OUT/remeasure.json
# (with --remeasure-fraction) and OUT/log.txt (which starts with `nvidia-smi -L`: the card's UUID).
set -euo pipefail
payload=$1 out=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/cwm-device.XXXXXX)
mkdir -p "$out"
tar -xJf "$payload/runtime.tar.xz" -C "$work"
for archive in "$payload"/bundles/*.tar.xz; do tar -xJf "$archive" -C "$work"; done
export TVM_USE_RUNTIME_LIB=1 PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ nvidia-smi -L || true; python3 --version; } 2>&1 | tee "$out/log.txt"
mapfile -t bundles < <(sed "s|^|$work/|" "$payload/bundles.txt")
python3 "$here/cuda_measure.py" "${bundles[@]}" --out "$out" "$@" 2>&1 | tee -a "$out/log.txt"
exit "${PIPESTATUS[0]}"
