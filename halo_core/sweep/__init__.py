"""`halo sweep`: each server setting's eval scores and speed, paired against the first (run.py)."""
