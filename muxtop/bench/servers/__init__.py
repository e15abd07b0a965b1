"""Baseline echo servers for `muxtop bench echo`, each run on its own with ``python -m``.

They do what muxtop's engine does for echo — TCP_NODELAY, a 1024 backlog, recv(65536), send
what came, buffer only what the kernel did not take, stop reading while that buffer is not empty —
and nothing more, so the comparison measures the event loop, not extra features.
"""

BACKLOG = 1024  # muxtop's EngineConfig.backlog
RECV_SIZE = 65536
