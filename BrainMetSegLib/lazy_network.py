"""A model package's torch network built on first use.

With OpenVINO running the forward from its on-disk export and the network's convolution count
on disk too (:mod:`.conv_counts`), a run needs the torch network only to export, to count, or
to fall back to torch (OpenVINO failing, out of memory). Building it imports MONAI (~3 s of CPU
on 2 AVX2 cores: MONAI's ``__init__`` imports all its subpackages) and loads the weights, so
:class:`~.pipeline.Segmenter` hands :func:`~.inference.predict` a :class:`LazyNetwork` there:
it is built, by the same loader as always, the first time anything asks it for more than its
identity.
"""

from __future__ import annotations

from collections.abc import Callable


class LazyNetwork:
    """Stands for the torch network ``load()`` returns, calling ``load`` on first use (any
    attribute or call; ``load`` is expected to keep what it built). A plain package network
    (one weights file, ``network_io`` plain) is a bare architecture, so it has no
    ``predict_volume`` (an imported framework's predictor): asking for it does not build it."""

    def __init__(self, load: Callable[[], object]):
        self._load = load
        self.built = False

    def load(self):
        """The torch network (built now if not yet)."""
        net = self._load()
        self.built = True
        return net

    def __call__(self, *args, **kwargs):
        return self.load()(*args, **kwargs)

    def __getattr__(self, name: str):
        if name.startswith("__") or name == "predict_volume":
            raise AttributeError(name)
        return getattr(self.load(), name)


def materialised(net):
    """``net`` itself, or the network a :class:`LazyNetwork` stands for (built now)."""
    return net.load() if isinstance(net, LazyNetwork) else net
