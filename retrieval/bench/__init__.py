"""Benchmarks that an installed ``xmr bench`` runs: recall@k on real data, search and
embedding speed. ``commands.py`` holds the ``xmr bench`` commands, each a thin caller of one
module here; the scripts in ``benchmarks/`` are thin entry points to these modules."""
