"""The proxy's faults and its control: toxiproxy's toxics as state machines any loop can drive
(toxics.py), the proxies and their toxics as toxiproxy models them (registry.py), and
toxiproxy's HTTP API over them (api.py). The engine owns the sockets; nothing here imports it."""
