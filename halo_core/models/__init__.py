"""Model files: a reference resolved through the model sources and listed (resolve.py), the
GGUF header read without loading a model (header.py), and synthetic models (synth.py)."""
