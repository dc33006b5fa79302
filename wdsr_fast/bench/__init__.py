"""Side-by-side throughput: ``wdsr-fast bench`` and ``benchmarks/run.py``.

Every row is measured in the same process on the same inputs, interleaved (round-robin, medians):
- ``eager`` / ``eager-cl``: the trainable WDSR (weight norm computed every call), NCHW or channels_last;
  ``eager-cl+graphs`` the latter replayed as a CUDA graph (GPU);
- ``folded-cl``: the folded reference (plain convs), eager, channels_last; ``folded-pad32-cl`` (``+graphs``) with
  WDSR-B's low-rank width zero-padded to 32 channels (the same outputs, widths cuDNN's tensor-core kernels take);
- ``torchscript``: the folded reference traced, ``torch.jit.freeze``-d and ``optimize_for_inference``;
- ``compile`` / ``compile-freezing`` / ``compile-max``: the folded reference under ``torch.compile`` (inductor;
  default, with freezing on CPU, max-autotune), channels_last; the first call's compile time reported apart;
- ``onnxruntime`` / ``openvino``: those runtimes on CPU, fed the folded model exported to ONNX;
- ``fast-<backend>``: FastWDSR on each backend of the registry, and ``+graphs`` with CUDA-graph replay (GPU);
  ``fast-triton-persistent`` the Triton backend with its persistent WDSR-B block kernel;
- ``op:<block op>:<backend>`` and ``op:tail_shuffle:<backend>``: one op alone, against the same op of
  ``ops/reference.py`` on folded weights (``op:...:reference``); ``op:wdsr_b_block:triton-persistent`` likewise.

Cases are the product of presets, scales, sizes, batches and dtypes, or named one by one (``--cases``); every row has
its time per image and images (frames) per second.

The modules, one concern each: ``work.py`` counts FLOPs and minimum bytes from the architecture; ``rows.py`` says
what is timed (a function per row kind, the place to add one); ``runtimes.py`` drives ONNX Runtime and OpenVINO;
``measure.py`` times the rows and holds them against the measured peaks; ``memory.py`` measures a forward's peak
memory on CPU; ``report.py`` writes the table, JSON, CSV and plot; ``suite.py`` runs a plan of cases; ``timing.py``
times a call (shared with the demo). The command line is ``wdsr_fast.cli.bench``.
"""
