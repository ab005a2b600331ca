"""Evaluations: what-if drills over config, policy and the ledger (suites and graders to come)."""
