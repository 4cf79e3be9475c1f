"""Saved searches: a seller saves a photo and is told (a list to poll, and an optional webhook) when a catalogue
image added later matches it at a confident level.

May import: search (the search service), ingest's URL checks and webhook delivery, core.
"""
