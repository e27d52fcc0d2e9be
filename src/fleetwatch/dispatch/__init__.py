"""Distributed queries: which queries a host gets on distributed/read, where the answers of a
distributed/write go, and how long an empty read is held. May import bus/ and `config` only;
the query sources (detail queries, labels, campaigns) register on it from above."""
