"""Served networks, rasterisers, runtimes, target bundles and the Ray Serve application."""
