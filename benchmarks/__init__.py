"""Benchmarks: commands that measure and print numbers (never run as tests)."""
