"""Engines run one prepared job and report how it went.  See `nexus.engines.base`."""
