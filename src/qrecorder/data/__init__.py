"""Data for the workflow runner: a synthetic market panel, a file loader and DatasetH."""

from qrecorder.data.dataset import DK_I, DK_L, DK_R, DatasetH
from qrecorder.data.errors import DataError
from qrecorder.data.loader import FilePanel, read_table, to_panel
from qrecorder.data.synthetic import SyntheticPanel, make_synthetic_panel

__all__ = [
    "DK_I", "DK_L", "DK_R", "DataError", "DatasetH", "FilePanel", "SyntheticPanel",
    "make_synthetic_panel", "read_table", "to_panel",
]
