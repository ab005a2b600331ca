"""Evaluations: suites, graders, runs, paired non-inferiority verdicts, replay and cutoff drills."""
