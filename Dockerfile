# hmmclf in a container, with the dependency versions pinned (and hash-checked) by
# requirements.lock.
#
#   docker build -t hmmclf .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/data" hmmclf cv --folds 5
#
# --user makes what hmmclf writes into the mounted folder (features/, reports/, model.npz)
# yours rather than uid 1000's. Any uid works, even one with no account in the image:
# HOME, MPLCONFIGDIR and /data are writable by everyone.
FROM python:3.11-slim

LABEL org.opencontainers.image.title="hmmclf" \
      org.opencontainers.image.description="Hidden Markov Model classifier for lung-sound clips: normal, crackle, wheeze or both" \
      org.opencontainers.image.licenses="BSD-3-Clause"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Dependencies first, in a layer of their own that is rebuilt only when the lock changes.
# Every locked package ships wheels for CPython 3.11 on manylinux x86_64 and aarch64
# (libsndfile comes inside the soundfile wheel): nothing is compiled, nothing is apt-got.
COPY requirements.lock requirements-build.lock /tmp/hmmclf-build/
RUN pip install --require-hashes -r /tmp/hmmclf-build/requirements.lock \
    && pip install --require-hashes -r /tmp/hmmclf-build/requirements-build.lock

# hmmclf itself, with nothing resolved beyond the locks: no build isolation, so the build
# backend is the pinned one installed above; pip check fails the build if setup.cfg asks
# for versions the lock does not hold.
COPY pyproject.toml setup.cfg README.md LICENSE /tmp/hmmclf-build/
COPY hmmclf /tmp/hmmclf-build/hmmclf
RUN pip install --no-deps --no-build-isolation /tmp/hmmclf-build \
    && pip check \
    && rm -rf /tmp/hmmclf-build

ENV MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib \
    HOME=/tmp

# Default non-root user (uid 1000); `docker run --user UID:GID` replaces it with any uid.
# Matplotlib's font cache is built once here, read-only for the users that come later.
RUN groupadd --gid 1000 hmmclf \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp \
        --shell /usr/sbin/nologin hmmclf \
    && install -d -m 1777 /data /tmp/matplotlib \
    && python -c "import matplotlib.font_manager" \
    && chmod 1777 /tmp/matplotlib \
    && hmmclf --version

USER 1000:1000
WORKDIR /data
ENTRYPOINT ["hmmclf"]
CMD ["--help"]
