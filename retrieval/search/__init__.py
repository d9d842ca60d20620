"""The query layer: the ``Engine`` that opens an index and searches it, moments, filters, query
parts and hits. Reads :mod:`indexer.storage`; embeds through :mod:`retrieval.models`.
"""
