"""Deployment: ONNX export (``onnx``), what a model file holds (``describe``) and WDSR in spandrel (``spandrel``)."""
