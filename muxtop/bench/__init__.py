"""`muxtop bench`: measurements that print figures — the cost of one wait call against idle fds
(`wait`), echo throughput against baseline servers (`echo`), the detectors' cost (`diagnose`)
and the dashboard's frame cost (`ui`)."""
