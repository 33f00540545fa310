"""Import models trained elsewhere (nnU-Net v2 results, MONAI bundles) as safe model packages.

Importing is the one place where a pickle (a PyTorch checkpoint) is read, and only with
``torch.load(weights_only=True)`` plus an explicit allow-list; the package written holds
safetensors weights with their sha256 in the card, and everything after runs from those.
"""
