"""The models: the registry, towers, runtimes (torch, ONNX Runtime, open_clip) and the torch-free
preprocessors; the shipped weights and configs. Imports nothing of the index or the query layer.
"""
