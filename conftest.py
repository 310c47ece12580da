"""Loads the project's pytest plugin for every run (findings, tests, benchmarks)."""

pytest_plugins = ["suite.plugin"]
