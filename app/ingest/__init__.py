"""Catalogue ingestion: manifests, uploads (ZIP, CSV of URLs), fetching, the job store and its runner, and the
read → embed → write pipeline whose write transaction acknowledges each item with its result.

May import catalog, core, embeddings and index; never search, api or fastapi.
"""
