"""The catalogue: factories, products and images (the database is the source of truth), the media store of
stored copies, and keeping the vector index equal to the database (reconcile, flush, background rebuild).

May import core, embeddings and index; never search, ingest or api.
"""
