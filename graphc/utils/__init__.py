"""`graphc.utils`: data loading and TensorBoard (`graphc.utils.tensorboard`, imported on use)."""

from graphc.utils import data
