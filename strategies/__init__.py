"""Federated strategies (Flower plumbing) and the pure maths they use (backbones, grouping, fusion).

Import-free on purpose: pure modules here must load without Flower (see ``tests/test_layout.py``).
"""
