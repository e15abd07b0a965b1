"""`muxtop flood`: a load and fault generator for TCP servers, run in its own process.

``cli`` is the command, ``client`` the epoll loop and its patterns, ``stats`` the counters,
``report`` the progress and summary lines, ``workers`` the split across processes, and
``process.FloodProcess`` the way a UI launches and watches one without blocking.
Nothing here imports textual.
"""
