"""Helpers every layer of resbone may use: atomic file writes and the rank of this process."""
