"""Shared pytest configuration: the testbed plugin (fixture `testbed`)."""

pytest_plugins = ["testbed.fixtures"]
