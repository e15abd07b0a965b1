"""The kernel's vocabulary: epoll bits and interest lists, socket probes (ioctl, TCP_INFO),
/proc parsers and sock_diag. Plain functions over fds and pids; nothing here keeps state."""
