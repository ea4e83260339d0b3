# Titans image: `titans serve` (the default) on a slim Python base, as a non-root user. The
# monitor, the scheduler and the MLflow server run from the same image with another command.
# Build from the repository root: docker build -f deploy/docker/api.Dockerfile .
# (No Docker engine runs on the development machines; tests lint this file with hadolint.)

# ---- build: a wheel of the project, nothing else from the source tree ships -------------
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip install --no-cache-dir build==1.2.2 \
 && python -m build --wheel --outdir /dist

# ---- runtime: the wheel and its runtime dependencies only (no dev/bench extras) ----------
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TITANS_HOME=/var/lib/titans \
    OMP_NUM_THREADS=1
COPY --from=build /dist/*.whl /tmp/
# extras: psycopg for the Postgres ops store and MLflow backend, boto3 for S3 artifacts (the
# same image runs `titans serve`, `titans monitor serve`, `titans scheduler` and `mlflow server`).
# DL3013 cannot see that "${wheel}[...]" is our own wheel, whose dependencies pyproject bounds.
# hadolint ignore=DL3013
RUN wheel="$(ls /tmp/*.whl)" \
 && python -m pip install --no-cache-dir "${wheel}[postgres,s3]" \
 && rm -f /tmp/*.whl \
 && groupadd --system --gid 10001 titans \
 && useradd --system --uid 10001 --gid titans --home-dir /var/lib/titans --create-home titans
USER 10001:10001
WORKDIR /var/lib/titans
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["titans", "serve", "--host", "0.0.0.0", "--port", "8000"]
