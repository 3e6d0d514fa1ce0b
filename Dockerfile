# labelcut: serve the bundled (or a mounted) multi-label model on :8000.
#
#   docker build -t labelcut .                       # PyPI's torch (CUDA-capable)
#   docker run --gpus all -p 8000:8000 labelcut      # GPU;  drop --gpus all for the CPU
#
# A test build can install a local torch wheel instead of PyPI's multi-GB CUDA build:
#   cp /path/to/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl wheels/
#   docker build --build-arg TORCH_SPEC=/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl -t labelcut .
# The wheel is read in the build stage only; the final image holds the installed torch, not the file.
# Written for both builders: the legacy one (no RUN --mount, no heredocs) and BuildKit.

# ---- build: a virtual environment with torch, the dependencies and labelcut -------------
FROM python:3.11-slim AS build

# Only what this Dockerfile says: no pip.conf of the base image or of whoever builds it
# (an inherited find-links or constraint would change which torch gets installed).
ENV PIP_CONFIG_FILE=/dev/null \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv

# torch first, in its own layer: the largest download, and the one that changes least.
# TORCH_SPEC is a requirement (torch==X from the index) or a path to a wheel under /wheels/.
# Never a bare --find-links: pip would then prefer a newer CUDA torch from the index.
ARG TORCH_SPEC=torch==2.13.0
# wheel[s] matches the optional, git-ignored wheels/ folder (its *.whl files, see
# .dockerignore) and nothing when it is absent; .dockerignore is always in the context and
# keeps COPY from failing on an empty match. It lands in /wheels/ of this stage only.
COPY .dockerignore wheel[s] /wheels/
# The exact torch installed becomes a constraint, so no later step can replace it.
# DL3013 (pin versions): TORCH_SPEC is pinned, torch==X or one wheel file.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir "${TORCH_SPEC}" \
 && python -c "import importlib.metadata as m; print('torch==' + m.version('torch'))" \
        > /tmp/torch-constraint.txt \
 && cat /tmp/torch-constraint.txt

# The project's dependencies, read from pyproject.toml, before the sources (layer cache).
COPY pyproject.toml /src/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt -c /tmp/torch-constraint.txt

# labelcut itself, non-editable: the bundled model and data are package data of
# `labelcut.models`; app/, tuning/ and models/ install under the one name labelcut.
COPY README.md /src/
COPY app /src/app
COPY tuning /src/tuning
COPY models /src/models
COPY labelcut /src/labelcut
RUN pip install --no-cache-dir --no-deps /src \
 && pip check \
 && labelcut --help > /dev/null

# ---- final: the environment, a non-root user, nothing of the build ----------------------
FROM python:3.11-slim

LABEL org.opencontainers.image.title="labelcut" \
      org.opencontainers.image.description="Serve multi-label PyTorch classifiers and tune per-label thresholds." \
      org.opencontainers.image.licenses="Apache-2.0"

# NVIDIA_DRIVER_CAPABILITIES: `--gpus all` mounts the driver's compute libraries; torch's
# pip wheels bring the rest of CUDA. LABELCUT_DATA_DIR holds the threshold store.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    LABELCUT_DATA_DIR=/data

# A fixed uid/gid, so a bind-mounted host directory can be chowned to it (10001:10001).
RUN groupadd --system --gid 10001 labelcut \
 && useradd --system --uid 10001 --gid labelcut --home-dir /home/labelcut --create-home \
        --shell /usr/sbin/nologin labelcut \
 && mkdir /data \
 && chown labelcut:labelcut /data

# Owned by root and read-only to the service; pip compiled the bytecode at install time.
COPY --from=build /opt/venv /opt/venv

# Numeric, so that runAsNonRoot-style checks can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /home/labelcut
# After the chown: a new named volume starts as a copy of /data, owner included.
VOLUME ["/data"]
EXPOSE 8000

# Readiness, not just liveness: /readyz answers 503 until the model is loaded and warm (and
# when it failed to load), so "healthy" means "serving predictions". The start period covers
# the model load: failures in it do not count, and the first success ends it early. python's
# urllib (the image has no curl): a non-2xx answer or no answer raises, and python exits 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

CMD ["labelcut", "serve", "--host", "0.0.0.0", "--port", "8000"]
