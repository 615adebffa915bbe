"""Helpers the tests share (imported as ``support.<module>``: ``test/`` is on pytest's path)."""
