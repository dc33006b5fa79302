"""Training data: MATLAB-compatible bicubic resize and super-resolution datasets."""
