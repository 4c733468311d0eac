"""Built-in models for the workflow runner; any class with fit/predict works too."""

from qrecorder.models.base import Model
from qrecorder.models.gbdt import LGBModel
from qrecorder.models.linear import LinearModel
from qrecorder.models.mlp import MLPModel

__all__ = ["LGBModel", "LinearModel", "MLPModel", "Model"]
