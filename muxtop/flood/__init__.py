"""`muxtop flood`: a load and fault generator for TCP servers, run in its own process.

``cli`` is the command, ``client`` the epoll loop and its patterns (open or closed loop),
``alarm`` its precise wakeups, ``stats`` the counters, ``latency`` the HdrHistograms,
``report`` the progress and summary lines, ``hdrlog`` the interval log, ``workers`` the split
across processes, and ``process.FloodProcess`` the way a UI launches and watches one without
blocking.
Nothing here imports textual.
"""
