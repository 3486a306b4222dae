"""`halo eval`: suites against an OpenAI-compatible endpoint, in resumable runs (run.py), and
the helpers eval-suite plugins use to call their frameworks (kit.py)."""
