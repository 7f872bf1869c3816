"""`graphc.utils.tensorboard.SummaryWriter`: TensorBoard event files, written by tensorboardX.

Values are converted from graphc tensors to numpy; `add_graph` records the model's autograd
graph for one input (nodes named by the modules that produced them, parameters by their names).

    >>> writer = SummaryWriter("runs/exp1")
    >>> writer.add_scalar("loss/train", loss.item(), step)
"""

from __future__ import annotations

import numpy as np
from tensorboardX import SummaryWriter as _Writer
from tensorboardX.proto import attr_value_pb2, event_pb2, graph_pb2, node_def_pb2, versions_pb2
from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

from graphc._tensor import Tensor


def _numpy(value):
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    return value


class SummaryWriter:
    """Writes scalars, images, histograms, text and graphs for TensorBoard under `log_dir`
    (default runs/<date>_<host>)."""

    def __init__(
        self,
        log_dir: str | None = None,
        comment: str = "",
        purge_step=None,
        max_queue: int = 10,
        flush_secs: int = 120,
        filename_suffix: str = "",
    ) -> None:
        self._writer = _Writer(
            logdir=log_dir,
            comment=comment,
            purge_step=purge_step,
            max_queue=max_queue,
            flush_secs=flush_secs,
            filename_suffix=filename_suffix,
        )

    @property
    def log_dir(self) -> str:
        return self._writer.logdir

    def get_logdir(self) -> str:
        return self._writer.logdir

    def add_scalar(self, tag: str, scalar_value, global_step=None, walltime=None) -> None:
        value = _numpy(scalar_value)
        self._writer.add_scalar(tag, float(np.asarray(value).reshape(())), global_step, walltime)

    def add_scalars(self, main_tag: str, tag_scalar_dict: dict, global_step=None, walltime=None) -> None:
        values = {k: float(np.asarray(_numpy(v)).reshape(())) for k, v in tag_scalar_dict.items()}
        self._writer.add_scalars(main_tag, values, global_step, walltime)

    def add_image(
        self, tag: str, img_tensor, global_step=None, walltime=None, dataformats: str = "CHW"
    ) -> None:
        self._writer.add_image(tag, _numpy(img_tensor), global_step, walltime, dataformats)

    def add_images(
        self, tag: str, img_tensor, global_step=None, walltime=None, dataformats: str = "NCHW"
    ) -> None:
        self._writer.add_images(tag, _numpy(img_tensor), global_step, walltime, dataformats)

    def add_histogram(
        self, tag: str, values, global_step=None, bins="tensorflow", walltime=None, max_bins=None
    ) -> None:
        self._writer.add_histogram(
            tag, np.asarray(_numpy(values), dtype=np.float64), global_step, bins, walltime, max_bins
        )

    def add_text(self, tag: str, text_string: str, global_step=None, walltime=None) -> None:
        self._writer.add_text(tag, text_string, global_step, walltime)

    def add_graph(self, model, input_to_model=None, verbose: bool = False) -> None:
        """Record the operations `model` runs on `input_to_model` (a tensor or a tuple)."""
        if input_to_model is None:
            raise ValueError("add_graph needs an example input (input_to_model) to run the model on")
        graph = model_graph(model, input_to_model)
        if verbose:
            print(graph)
        event = event_pb2.Event(graph_def=graph.SerializeToString())
        self._writer._get_file_writer().add_event(event)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def model_graph(model, inputs) -> graph_pb2.GraphDef:
    """A TensorBoard GraphDef of the autograd graph of `model(*inputs)`."""
    from graphc.autograd.engine import AccumulateGrad
    from graphc.autograd.grad_mode import enable_grad

    inputs = inputs if isinstance(inputs, (tuple, list)) else (inputs,)
    inputs = tuple(
        x.detach().requires_grad_(x.dtype.is_floating_point) if isinstance(x, Tensor) else x for x in inputs
    )
    param_names = {id(p): name for name, p in model.named_parameters()}
    for i, x in enumerate(inputs):
        if isinstance(x, Tensor):
            param_names[id(x)] = f"input/{i}"
    scopes: dict[int, str] = {}
    frontiers: dict[int, list] = {}

    def tensors(values):
        return [
            t for t in (values if isinstance(values, (tuple, list)) else (values,)) if isinstance(t, Tensor)
        ]

    def before(key):
        def hook(module, args):
            # the graph nodes that existed when the module was entered are not its own
            frontiers.setdefault(key, []).append(
                {id(t.grad_fn) for t in tensors(args) if t.grad_fn is not None}
            )

        return hook

    def after(key, scope):
        def hook(module, args, out):
            stop = frontiers[key].pop()
            stack = [t.grad_fn for t in tensors(out) if t.grad_fn is not None]
            seen = set()
            while stack:  # every node between the module's inputs and outputs is in it
                node = stack.pop()
                if id(node) in stop or id(node) in seen or isinstance(node, AccumulateGrad):
                    continue
                seen.add(id(node))
                scopes.setdefault(id(node), scope)  # inner modules ran (and claimed) first
                stack.extend(n for n, _ in node.next_functions if n is not None)

        return hook

    handles = []
    for name, m in model.named_modules():
        if name:
            handles.append(m.register_forward_pre_hook(before(id(m))))
            handles.append(m.register_forward_hook(after(id(m), name.replace(".", "/"))))
    try:
        with enable_grad():
            out = model(*inputs)
    finally:
        for h in handles:
            h.remove()
    outputs = out if isinstance(out, (tuple, list)) else (out,)
    names: dict[int, str] = {}
    nodes = []
    counter = 0
    stack = [t.grad_fn for t in outputs if isinstance(t, Tensor) and t.grad_fn is not None]
    order = []
    while stack:
        node = stack.pop()
        if id(node) in names:
            continue
        if isinstance(node, AccumulateGrad):
            var = node.variable
            names[id(node)] = param_names.get(id(var), f"leaf/{len(names)}")
        else:
            op = node.name().removesuffix("Backward0").removesuffix("Backward1")
            scope = scopes.get(id(node), "")
            names[id(node)] = f"{scope}/{op}_{counter}" if scope else f"{op}_{counter}"
            counter += 1
        order.append(node)
        stack.extend(n for n, _ in node.next_functions if n is not None)
    for node in reversed(order):
        if isinstance(node, AccumulateGrad):
            var = node.variable
            op, shape = (
                "Parameter" if not names[id(node)].startswith("input") else "Input",
                list(var.shape) if var is not None else [],
            )
            inputs_ = []
        else:
            op = node.name().removesuffix("Backward0").removesuffix("Backward1")
            shape = list(node._out_meta[0][0]) if node._out_meta else []
            inputs_ = [names[id(n)] for n, _ in node.next_functions if n is not None]
        dims = [TensorShapeProto.Dim(size=int(s)) for s in shape]
        attr = {
            "_output_shapes": attr_value_pb2.AttrValue(
                list=attr_value_pb2.AttrValue.ListValue(shape=[TensorShapeProto(dim=dims)])
            )
        }
        nodes.append(node_def_pb2.NodeDef(name=names[id(node)], op=op, input=inputs_, attr=attr))
    return graph_pb2.GraphDef(node=nodes, versions=versions_pb2.VersionDef(producer=22))
