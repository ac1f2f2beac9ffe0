"""Developer tooling for bin/ scripts and tests; never imported by the running app."""
