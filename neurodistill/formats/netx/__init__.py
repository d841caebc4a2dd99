"""lava-dl netx `.net` files: `writer` (a deployment graph) and `reader` (ours or lava-dl's own)."""
