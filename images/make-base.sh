#!/bin/sh
# Create the base image the Dockerfiles name (python:3.11-slim-bookworm) when no registry can be
# reached: a minimal Debian bookworm with python3, made by mmdebstrap and imported into Docker.
# Where a registry is reachable, `docker pull python:3.11-slim-bookworm` does the same job.
set -eu
TAG="${1:-python:3.11-slim-bookworm}"
if docker image inspect "$TAG" >/dev/null 2>&1; then
    echo "$TAG exists"
    exit 0
fi
command -v mmdebstrap >/dev/null || { echo "make-base.sh: needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }
mmdebstrap --quiet --variant=minbase --include=python3,bash,ca-certificates,procps bookworm - \
    | docker import --change 'CMD ["python3"]' - "$TAG"
echo "created $TAG"
