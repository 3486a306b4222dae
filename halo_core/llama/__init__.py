"""What halo knows about llama.cpp: the flags each build accepts (flags.py), the processes it
starts and their pid files and ports (process.py), servers (server.py), RPC workers (rpc.py),
whether a model fits (fit.py), finding a running server (endpoints.py) and giving memory back
(flush.py)."""
