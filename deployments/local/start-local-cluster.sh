#!/usr/bin/env bash
# A scheduler and two workers on this machine, as on a real cluster; then
#   seaice-dask run pipeline.yaml --scheduler tcp://127.0.0.1:8786
set -euo pipefail
dask scheduler --host 127.0.0.1 --port 8786 &
sleep 2
dask worker tcp://127.0.0.1:8786 --nthreads 1 --memory-limit 4GiB &
dask worker tcp://127.0.0.1:8786 --nthreads 1 --memory-limit 4GiB &
wait
