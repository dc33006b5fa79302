"""Pure data, no network: image files (modes, bit depth, orientation, colour profiles) and atomic file writes."""
