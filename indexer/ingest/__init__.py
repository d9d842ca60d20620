"""From a media folder into the index: the walk, decode workers, video and moments, the run
itself (``index_folder``), bulk loads, Ray, and ``xmr doctor --fix``'s replay. Writes through
:mod:`indexer.storage`; never imports a model.
"""
