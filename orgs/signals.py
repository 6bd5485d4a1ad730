"""Signal receivers: plumbing that calls one service each."""
