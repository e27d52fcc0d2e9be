"""Fleet state: hosts, enroll secrets, users and tokens, the agent config."""
