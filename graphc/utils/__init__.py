"""`graphc.utils`: data loading (and, later, TensorBoard)."""

from graphc.utils import data
