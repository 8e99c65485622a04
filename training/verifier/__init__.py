"""The personal verifier f: one architecture spec, and everything derived from it."""
