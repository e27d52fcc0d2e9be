"""The osquery agent API (enroll, config, log, distributed read/write) and the detail query
source: an adapter over the services. May import the services and everything below them;
only `app.py` imports it."""
