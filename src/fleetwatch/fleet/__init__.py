"""The fleet's domain: hosts, labels, teams, targets, enroll secrets, users and tokens, the
agent config, result logs, activities, rate limits. May import query/, index/, dispatch/,
bus/, storage/, `sql_check`, `config`, `periodic`; not live/ or the adapters."""
