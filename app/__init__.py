"""SourceLens: reverse-image supplier search.

Packages, top down; each may import those below it and never those above (tests/process/test_lint.py runs
import-linter on the contracts in pyproject.toml):
  cli, main, bootstrap   entry points: parse arguments, wire the services, serve
  client                 the typed Python client of the HTTP API (beside main; only the API's wire schemas)
  api | demo             HTTP routes and wire schemas | the offline demo, sample catalogue and evaluation
  search | ingest        the query pipeline | catalogue ingestion jobs (independent of each other)
  catalog                factories, products, images, the media store and the index's upkeep
  core                   settings, database engine, errors, usable cores
`embeddings` (models, image decoding, the model scheduler) and `index` (vector indexes) sit beside `app` and
import nothing from it.
"""
