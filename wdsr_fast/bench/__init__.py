"""Side-by-side throughput: ``wdsr-fast bench`` and ``benchmarks/run.py``.

Every row is measured in the same process on the same inputs:
- ``reference``: the trainable WDSR (weight norm computed every call), eager, NCHW or channels_last;
- ``compile`` / ``compile-max``: the folded reference under ``torch.compile`` (default / max-autotune),
  channels_last (on GPU; on CPU only with ``--compile-on-cpu``; ``--compile`` chooses which, or none);
- ``fast-<backend>``: FastWDSR on each available backend, and ``+graphs`` with CUDA-graph replay (GPU);
- ``op:wdsr_b_block:<backend>`` and ``op:tail_shuffle:<backend>``: one op of one backend against the same op of
  the torch backend (the plain-PyTorch ops of ``ops/reference.py``).

The modules, one concern each: ``work.py`` counts FLOPs and minimum bytes from the architecture; ``rows.py`` says
what is timed (a function per row kind, the place to add one); ``measure.py`` times the rows and holds them against
the measured roofline; ``report.py`` writes the table, JSON, CSV and plot; ``command.py`` is the command line.
The timer itself (``wdsr_fast.timing``) is shared with the demo.
"""
from .command import add_parser, main, run

__all__ = ["add_parser", "main", "run"]
