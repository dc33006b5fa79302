"""Checkpoints (placeholder: filled in by the checkpoint work)."""


def load_model(path, map_location="cpu"):
    raise NotImplementedError


def save_model(model, path):
    raise NotImplementedError
