"""The HTTP API: routes per resource, dependencies, middleware, error mapping and wire schemas (XCreate/XRead),
and the mapping from domain results to those schemas.

May import search, ingest, catalog, core and embeddings; never ORM models, SQLAlchemy or bootstrap.
"""
