"""The machine halo runs on, read through a sysroot: its files (hostfiles.py), GPUs (gpu.py),
the facts audit, tuning and run provenance record (hostfacts.py), the metrics sampled during
long runs (metrics.py) and the memory-bandwidth roofline (bandwidth.py)."""
