"""`halo audit`, `verify`, `tune`, `rollback`: tuners' plans validated, applied and measured
(tuning.py) through a journaled, reversible transaction (journal.py)."""
