"""Training BrainMetSeg models: datasets, preprocessing cache, QC, sampling, the loop.

``brainmetseg train`` (:mod:`BrainMetSegLib.commands.train`) drives :func:`loop.train`.
"""

from .config import TrainConfig
from .dataset import CaseRecord, Dataset, check_geometry, load_dataset
from .loop import train

__all__ = ["CaseRecord", "Dataset", "TrainConfig", "check_geometry", "load_dataset", "train"]
