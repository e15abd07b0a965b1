"""muxtop: see IO multiplexing at work — select, poll, epoll and io_uring, live."""

__version__ = "0.1.0"
