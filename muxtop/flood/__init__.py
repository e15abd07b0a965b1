"""`muxtop flood`: a load and fault generator for TCP servers, run in its own process.

``cli`` is the command, ``patterns`` the table of patterns and their knobs, ``client`` the
epoll loop that drives them (open or closed loop),
``alarm`` its precise wakeups, ``stats`` the counters, ``latency`` the HdrHistograms,
``report`` the progress and summary lines, ``hdrlog`` the interval log, ``workers`` the split
across processes, and ``process.FloodProcess`` the way a UI launches and watches one without
blocking.
Nothing here imports textual.
"""
