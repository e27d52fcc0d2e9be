"""The osquery agent API: enroll, config, log, distributed read/write, detail queries."""
