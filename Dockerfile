# syntax=docker/dockerfile:1
# SourceLens API, web page and ingest jobs. Data (SQLite by default, index, media, model cache) lives in the
# /data volume; compose.yaml runs it with PostgreSQL. docs/operations.md has the details.

# --- build: dependencies in a layer of their own, then the code ----------------------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Only pyproject.toml decides this layer: editing the code does not reinstall torch. The packages are empty
# stand-ins for the install to resolve; the real code replaces them below.
COPY pyproject.toml README.md ./
RUN mkdir -p app embeddings index \
    && touch app/__init__.py embeddings/__init__.py index/__init__.py \
    && pip install --index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple \
        ".[postgres,redis,milvus]" \
    && pip uninstall --yes sourcelens
COPY app ./app
COPY embeddings ./embeddings
COPY index ./index
RUN pip install --no-deps . && python -c "import app.main, embeddings, index"

# --- run: the virtual environment, a user without privileges, nothing else ----------------------------
FROM python:3.11-slim AS run
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SOURCELENS_DATA_DIR=/data \
    SOURCELENS_MODEL_CACHE_DIR=/data/models \
    SOURCELENS_HOST=0.0.0.0 \
    SOURCELENS_PORT=8000
RUN useradd --create-home --uid 1000 sourcelens && mkdir -p /data && chown sourcelens /data
COPY --from=build /opt/venv /opt/venv
COPY docker/entrypoint.sh /usr/local/bin/sourcelens-entrypoint
USER sourcelens
WORKDIR /home/sourcelens
VOLUME ["/data"]
EXPOSE 8000
# Ready, not merely alive: the model is loaded and the index agrees with the database. The first start may
# download the model's weights (about 600 MB for ViT-B-32), hence the long start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('SOURCELENS_PORT', '8000')}/readyz\", timeout=4)"]
ENTRYPOINT ["sourcelens-entrypoint"]
CMD ["serve"]
