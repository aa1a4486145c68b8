"""Backbone recommenders: one user's model, its loss, and which parameters are shared."""
