"""Another process's wait calls, read by a tracer (bpftrace or strace) as they happen:
`muxtop attach PID --trace`. One module per tracer turns its output into calls.py's records
as it streams; tracer.py runs the tool; choose.py picks one that can run here; session.py maps
the records onto the attached process's fds and keeps the ready-list ring; diagnose.py says
what the traced readiness proves."""
