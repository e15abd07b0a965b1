"""`muxtop bench`: measurements that print figures — the cost of one wait call against idle fds
(`wait`), echo throughput against baseline servers (`echo`, with a recorded variant), the
detectors' cost (`diagnose`), the dashboard's frame cost (`ui`), and opening and moving
through a long recording (`replay`)."""
