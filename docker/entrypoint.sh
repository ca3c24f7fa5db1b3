#!/bin/sh
# Every Fractal.ly image starts here, then runs its command (CMD) as given.
#
# numba reads its cache only from a folder it can write to (it probes with a temporary file and
# otherwise compiles), and a cluster runs the image with a read-only root: the cache baked at build
# time into /opt/numba-cache is copied to $NUMBA_CACHE_DIR (under /tmp, an emptyDir or a tmpfs) first.
# It is about 1 MB, copied in milliseconds; a cold start then loads the kernels instead of compiling.
set -e
if [ -d /opt/numba-cache ] && [ -n "$NUMBA_CACHE_DIR" ] && [ "$NUMBA_CACHE_DIR" != /opt/numba-cache ]; then
    mkdir -p "$NUMBA_CACHE_DIR"
    cp -R -p /opt/numba-cache/. "$NUMBA_CACHE_DIR/"
fi
exec "$@"
