"""Benchmarks that an installed ``xmr bench`` runs: recall@k on real data, search and
embedding speed. The scripts in ``benchmarks/`` are thin entry points to these modules."""
