"""`graphc.nn`: modules, layers, losses, containers and initialisation, as in `torch.nn`."""

from graphc.nn import (
    functional,
    init,
    parallel,  # noqa: E402
    utils,
)
from graphc.nn.activation import (
    ELU,
    GELU,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
)
from graphc.nn.containers import ModuleDict, ModuleList, ParameterDict, ParameterList, Sequential
from graphc.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    Bilinear,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    MaxPool1d,
    MaxPool2d,
    Unflatten,
)
from graphc.nn.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from graphc.nn.module import Module
from graphc.nn.normalization import (
    BatchNorm1d,
    BatchNorm2d,
    Embedding,
    GroupNorm,
    LayerNorm,
    Upsample,
)
from graphc.nn.parallel import DataParallel, DistributedDataParallel
from graphc.nn.parameter import Parameter
from graphc.nn.rnn import GRU, LSTM, RNN
from graphc.nn.transformer import (
    MultiheadAttention,
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)
