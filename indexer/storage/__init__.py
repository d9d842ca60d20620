"""The index on disk: its layout and manifest, FAISS shards and stored vectors, the SQL rows
(schema, store, migrations), the reader, the index types, and the checks of ``xmr doctor``.
Nothing here imports the ingest side.
"""
