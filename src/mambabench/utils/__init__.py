"""Instantiation, run logic, logging helpers and clear errors."""
