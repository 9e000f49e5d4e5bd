"""The on-disk store: segments, manifest, atomic commits, snapshots."""
