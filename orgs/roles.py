"""Moved to accessctl.roles (the bottom layer: the policy compares roles). Kept for migration 0001 and the
benchmarks, which import it by this name."""
from accessctl.roles import *  # noqa: F403
