"""State-dict key layouts: any supported layout of WDSR's weights mapped onto ours. Pure data mapping: it imports
nothing from the package, so that both the model (``WDSR.load_state_dict``) and the checkpoint reader use it.

Our layout is the authors' first release (JiahuiYu/wdsr_ntire2018): ``head.0``, ``body.{i}.body.{0,2[,3]}``,
``tail.0``, ``skip.0``, each conv holding ``bias``, ``weight_g`` and ``weight_v``. Also accepted:
- ``module.`` prefixes (DataParallel / DistributedDataParallel);
- the parametrizations weight-norm API (``parametrizations.weight.original0/1``) and plain conv ``weight``
  tensors (then g = ||w|| per output channel and v = w, which gives back exactly w);
- the ychfan/wdsr layout: one ``body`` Sequential, ``body.0`` the head, ``body.1..n`` the blocks and
  ``body.n+1`` the tail, ``skip.0`` as ours.
"""
from __future__ import annotations

import re

import torch


def canonical_conv_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip ``module.``, map the parametrizations API and plain weights onto weight_g / weight_v."""
    out = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        if key.endswith(".weight") and value.dim() == 4:  # a plain conv: g = ||w|| per output, v = w
            out[key[: -len("weight")] + "weight_g"] = value.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            key = key[: -len("weight")] + "weight_v"
        out[key] = value
    return out


def is_ychfan(state: dict[str, torch.Tensor]) -> bool:
    """Whether canonical keys are in the ychfan/wdsr layout (its head is ``body.0``)."""
    return "body.0.weight_v" in state and "head.0.weight_v" not in state


def from_ychfan(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ychfan/wdsr keys -> ours: body.0 -> head.0, body.k (1..n) -> body.(k-1), body.(n+1) -> tail.0."""
    indices = {int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k))}
    last = max(indices)
    out = {}
    for key, value in state.items():
        m = re.match(r"body\.(\d+)\.(.*)", key)
        if m is None:
            out[key] = value
            continue
        index, rest = int(m.group(1)), m.group(2)
        if index == 0:
            out[f"head.0.{rest}"] = value
        elif index == last:
            out[f"tail.0.{rest}"] = value
        else:
            out[f"body.{index - 1}.{rest}"] = value
    return out


def translate_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], bool]:
    """Any supported layout -> our keys. Returns (state_dict, came_from_ychfan)."""
    state = canonical_conv_keys(state)
    if is_ychfan(state):
        return from_ychfan(state), True
    return state, False
