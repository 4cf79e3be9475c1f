"""The query pipeline: photos and/or text in, verified and ranked factories out (pipeline, fusion, crops,
local-feature verification and outline alignment, the whole-product comparison, scoring), with its
catalogue reads in lookup.py.

May import catalog, core, embeddings and index; never ingest, api or fastapi.
"""
