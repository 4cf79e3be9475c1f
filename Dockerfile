# SourceLens API + web page. Data (SQLite, index, media, model cache) lives in the /data volume;
# set SOURCELENS_DATABASE_URL=postgresql+psycopg://... to use PostgreSQL instead of SQLite.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SOURCELENS_DATA_DIR=/data \
    SOURCELENS_MODEL_CACHE_DIR=/data/models \
    SOURCELENS_HOST=0.0.0.0 \
    SOURCELENS_PORT=8000

WORKDIR /srv/sourcelens
COPY pyproject.toml README.md ./
COPY app ./app
COPY embeddings ./embeddings
COPY index ./index
RUN pip install ".[postgres]" && useradd --create-home --uid 1000 sourcelens \
    && mkdir -p /data && chown sourcelens /data

USER sourcelens
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
CMD ["sourcelens", "serve"]
