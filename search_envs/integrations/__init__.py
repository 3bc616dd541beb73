"""Adapters that run the environments inside other training frameworks (see docs/verl.md)."""
