"""`halo bench`: the llama-bench matrix and its resumable runs (run.py), before/after comparison
(compare.py), the HTML report (report.py) and `halo bench setup` (inventory.py)."""
