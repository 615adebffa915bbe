"""Rendering of benchmark result files for the generated docs (tools/gen_docs.py)."""
