"""`halo optimize`: the fastest llama.cpp settings for a model on this machine (run.py)."""
