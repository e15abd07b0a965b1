"""`--metrics HOST:PORT`: what muxtop sees, in the format Prometheus scrapes (OpenMetrics),
read from published Snapshots only (collector.py builds the families, server.py serves them).
The `metrics` extra installs prometheus_client; nothing here loads without it until asked."""
