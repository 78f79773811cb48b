# matstore application image: the CLI, the queue worker and the dashboard.
#
# Built from a checkout because the Alembic migrations live in the repository's alembic/
# folder, next to the package (an editable install keeps them where matstore looks).
#   docker build -t matstore:local .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MATSTORE_DATA_DIR=/data/cache

# libgomp: OpenMP runtime some scientific wheels load at import time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The checkout (see .dockerignore), installed in editable mode so alembic/ is found.
COPY . .
RUN pip install --no-deps -e . \
    && useradd --create-home --uid 10001 matstore \
    && mkdir -p /data/cache /data/drop \
    && chown -R matstore:matstore /data

USER matstore
VOLUME ["/data/cache"]

CMD ["matstore", "--help"]
