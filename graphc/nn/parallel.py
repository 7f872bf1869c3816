"""`nn.DataParallel` and `nn.parallel.DistributedDataParallel` on one device.

graphc runs a model on one device, so these wrappers keep PyTorch's API (the wrapped model is
`.module`, state dict keys gain the `module.` prefix) and call the model directly; with
`graphc.distributed` (one process, rank 0 of 1) there are no gradients to average. Real
multi-process data parallelism is a later issue.
"""

from __future__ import annotations

from graphc.nn.module import Module


class DataParallel(Module):
    """Wraps `module`; forward runs it on the one available device."""

    def __init__(self, module: Module, device_ids=None, output_device=None, dim: int = 0):
        super().__init__()
        self.module = module
        self.device_ids = list(device_ids) if device_ids is not None else [0]
        self.output_device, self.dim = output_device, dim

    def forward(self, *inputs, **kwargs):
        return self.module(*inputs, **kwargs)


class DistributedDataParallel(DataParallel):
    """DistributedDataParallel's API for a single process (world size 1)."""

    def __init__(
        self,
        module: Module,
        device_ids=None,
        output_device=None,
        dim: int = 0,
        broadcast_buffers: bool = True,
        process_group=None,
        bucket_cap_mb=25,
        find_unused_parameters: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(module, device_ids, output_device, dim)
        self.find_unused_parameters = find_unused_parameters

    def no_sync(self):
        import contextlib

        return contextlib.nullcontext()
