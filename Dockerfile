# The engine's image: workers, beat, Flower, migrations, the sandbox gateway and the webhook
# receiver all run from it (docker-compose.yml picks the command). Configuration comes only from
# environment variables (.env.example).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (this layer is rebuilt only when pyproject.toml or the packages change).
COPY pyproject.toml README.md ./
COPY campaigns ./campaigns
COPY workers ./workers
RUN pip install .

# celeryconfig.py and the Alembic files live beside the packages, not in the wheel:
# `celery -A workers` imports celeryconfig from /app, and `campaigns db upgrade` reads
# /app/alembic.ini. PYTHONPATH makes /app the source of truth for both.
COPY celeryconfig.py alembic.ini ./
COPY alembic ./alembic
ENV PYTHONPATH=/app

# Never run as root (Celery warns, and a compromised gateway answer must not own the container).
# /data: beat's schedule, the sandbox's record; named volumes inherit this ownership.
RUN useradd --create-home --uid 10001 --user-group campaigns \
    && mkdir -p /data \
    && chown campaigns:campaigns /data
USER campaigns

CMD ["celery", "-A", "workers", "worker", "-l", "INFO"]
