# One image for every MedChat process: the Synapse main process, each worker and nginx
# (docker-compose.yml picks the role with `python -m medchat_dev.devconfig --cluster ...`).
#
# Two stages: the first compiles what needs compiling (psycopg2 against libpq) into a venv from
# requirements.lock, the exact versions the test suite ran on (scripts/lock); the second carries
# only that venv, the module and the configs, and runs as an unprivileged user. .dockerignore
# keeps data/ (keys, secrets, databases), .venv and .git out of the build context.
# The base matches the tested Python (3.11.7) on Debian 12; pin its digest once pulled (docs/deploy.md).
FROM python:3.11.7-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential libpq-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/medchat
COPY requirements.lock /tmp/requirements.lock
RUN /opt/medchat/bin/pip install --no-cache-dir --no-deps -r /tmp/requirements.lock
WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY module ./module
# Editable, as in development: medchat_dev finds synapse.yaml and config/ beside the module.
RUN /opt/medchat/bin/pip install --no-cache-dir --no-deps -e .

FROM python:3.11.7-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends curl libpq5 nginx postgresql-client \
    && rm -rf /var/lib/apt/lists/*
# postgresql-client: pg_dump / pg_restore for scripts/backup and scripts/restore (the major version
# of the compose file's PostgreSQL, 15 on Debian 12).
# The unprivileged user every process runs as; /data (the compose volume: signing key, secrets,
# media) and /run/medchat (nginx's rendered config, pid and scratch folders) are its own.
RUN groupadd --system --gid 10001 medchat \
    && useradd --system --uid 10001 --gid medchat --home-dir /data --no-create-home medchat \
    && mkdir -p /data /run/medchat && chown medchat:medchat /data /run/medchat
COPY --from=build /opt/medchat /opt/medchat
COPY --from=build /app /app
COPY synapse.yaml /app/synapse.yaml
COPY config /app/config
COPY scripts/backup scripts/restore scripts/backup.py /app/scripts/
ENV PATH=/opt/medchat/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
USER medchat:medchat
EXPOSE 8008 8080 8443 8448
# The main process's /api/health; compose gives each worker and nginx a check on its own port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD curl -fsS "http://127.0.0.1:${MEDCHAT_PORT:-8008}/api/health" || exit 1
CMD ["python", "-m", "medchat_dev.devconfig", "--data-dir", "/data", "--cluster"]
