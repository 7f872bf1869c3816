"""`graphc.utils.data`: datasets, samplers and the DataLoader, as in `torch.utils.data`."""

from graphc.utils.data import distributed  # noqa: E402  (torch.utils.data.distributed)
from graphc.utils.data.collate import default_collate, default_convert
from graphc.utils.data.dataloader import DataLoader, get_worker_info
from graphc.utils.data.dataset import (
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)
from graphc.utils.data.sampler import (
    BatchSampler,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    SubsetRandomSampler,
    WeightedRandomSampler,
)
