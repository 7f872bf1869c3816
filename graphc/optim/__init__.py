"""`graphc.optim`: optimizers and learning-rate schedulers with PyTorch's update rules."""

from graphc.optim import lr_scheduler
from graphc.optim.optimizer import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "Optimizer", "RMSprop", "lr_scheduler"]
