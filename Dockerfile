# fedspace instance image: `docker build -t fedspace .`, then
#   docker run -p 127.0.0.1:8080:8080 -v fedspace-data:/data fedspace
# Settings come from FEDSPACE_* variables (or a TOML file named by FEDSPACE_CONFIG);
# compose.yaml runs the two-domain rig from this image. Works with the classic builder too
# (no BuildKit-only syntax), so docker-compose v1 can build it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Dependencies first, from pyproject.toml alone: this layer survives code changes.
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt /tmp/pyproject.toml

# The project; setup.py generates the gRPC stubs with grpcio-tools in pip's isolated
# build environment, so the tools do not stay in the image.
COPY . /src
RUN pip install /src && rm -rf /src

# An unprivileged user owning the data and certificate folders: Docker copies this
# ownership into fresh named volumes mounted there.
RUN useradd --uid 10001 --user-group --home-dir /data --no-create-home --shell /usr/sbin/nologin fedspace \
 && mkdir -p /data /certs \
 && chown fedspace:fedspace /data /certs
USER fedspace
WORKDIR /data
ENV FEDSPACE_DATA_DIR=/data \
    FEDSPACE_HTTP__HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 8080

# /healthz on this instance's own listener (port, TLS and name from its settings).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "scenarios.container", "probe"]

ENTRYPOINT ["fedspace"]
CMD ["serve"]
