"""``make bench``: the mesh measured against the raw limits of its own stack, side by side in one run."""
