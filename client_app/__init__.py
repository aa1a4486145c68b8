"""The ClientApp: one user's device (handlers in ``app.py``; local training and ranking are pure)."""
