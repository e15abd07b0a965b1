"""muxtop: see IO multiplexing at work — select, poll and epoll, live."""

__version__ = "0.1.0"
