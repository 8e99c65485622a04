"""Helpers shared by tests of several packages (not test modules: pytest collects nothing here)."""
