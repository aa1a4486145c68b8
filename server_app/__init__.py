"""The ServerApp: builds the strategy from the run config, runs it and writes results."""
