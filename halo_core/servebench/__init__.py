"""`halo bench serve`: a running server measured through its API (run.py) and its report
(report.py); the prompts come from corpus.txt."""
