# The three images, one target each, sharing one builder and one runtime base.
#   api            gunicorn serving api:create_app() on $PORT (8080)
#   scraper        `python -m scrapers ranks|prices` (the CronJobs), `alembic upgrade head` (the
#                  migration Job)
#   fakeproviders  `python -m fakeproviders` (the local overlay's fake providers; not for production)
# Build from the repository root, e.g.:
#   docker build --target api --build-arg VERSION=0.1.0 --build-arg GIT_COMMIT="$(git rev-parse HEAD)" \
#       -t top-coins-api .
# tests/test_images.py runs the builder's RUN steps and each target's command outside Docker.

FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY requirements.txt ./
# Wheels only: the runtime stage has no compiler, so a package that needs one must fail here.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --only-binary=:all: -r requirements.txt
# The project last, so that a code change re-runs only this step. pip byte-compiles what it
# installs, and COPY --from keeps the mtimes the .pyc files were stamped with: nothing is
# compiled again at start, where the root filesystem is read-only.
COPY . .
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
    && /opt/venv/bin/pip check

# What every image shares: the venv, the user, the environment and the labels.
FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --gid 10001 topcoins \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin topcoins
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
ARG VERSION=unknown
ARG GIT_COMMIT=unknown
ARG SOURCE_URL=unknown
LABEL org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$GIT_COMMIT" \
      org.opencontainers.image.source="$SOURCE_URL" \
      org.opencontainers.image.licenses="LicenseRef-Proprietary"
ENV GIT_COMMIT=$GIT_COMMIT
# No HEALTHCHECK: Kubernetes probes the API and the fake providers itself, the jobs run to
# completion.

FROM runtime AS fakeproviders
EXPOSE 9101 9102 9103
LABEL org.opencontainers.image.title="top-coins-fakeproviders" \
      org.opencontainers.image.description="Fake CoinDesk Data, CryptoCompare and CoinMarketCap APIs for local clusters"
ENTRYPOINT ["python", "-m", "fakeproviders"]
CMD ["--host", "0.0.0.0"]

FROM runtime AS scraper
# The migration Job runs `alembic upgrade head` here; it finds the installed migrations.
COPY alembic.ini ./
LABEL org.opencontainers.image.title="top-coins-scraper" \
      org.opencontainers.image.description="Top Coins scrapers and migrations"
ENTRYPOINT ["python", "-m", "scrapers"]
CMD ["--help"]

# Last: the target a plain `docker build .` makes.
FROM runtime AS api
COPY gunicorn.conf.py ./
EXPOSE 8080
LABEL org.opencontainers.image.title="top-coins-api" \
      org.opencontainers.image.description="Top Coins API: crypto assets ranked by 24h volume, with USD prices"
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
