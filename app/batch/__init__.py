"""Batch query jobs: many photos (a ZIP, or a list of image URLs) searched one by one as a resumable job,
the top factories of each kept as the job's results (JSON or CSV).

May import: search (the search service), ingest's archive and URL fetcher, core. Nothing from api or catalog.
"""
