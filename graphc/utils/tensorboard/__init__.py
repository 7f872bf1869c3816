"""`graphc.utils.tensorboard.SummaryWriter`: TensorBoard event files, written by tensorboardX.

Values are converted from graphc tensors to numpy; `add_graph` draws the graph `graphc.script`
captures (nodes named by the modules that produced them, weights by their names).

    >>> writer = SummaryWriter("runs/exp1")
    >>> writer.add_scalar("loss/train", loss.item(), step)
"""

from __future__ import annotations

import warnings

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


def _shape_attr(types) -> dict:
    shapes = [
        TensorShapeProto(dim=[TensorShapeProto.Dim(size=d if isinstance(d, int) else -1) for d in t.shape])
        for t in types
    ]
    return {
        "_output_shapes": attr_value_pb2.AttrValue(list=attr_value_pb2.AttrValue.ListValue(shape=shapes)),
        "dtype": attr_value_pb2.AttrValue(s=",".join(t.dtype.name for t in types).encode()),
    }


def model_graph(model, inputs) -> graph_pb2.GraphDef:
    """A TensorBoard GraphDef of the graph `graphc.script` captures for `model(*inputs)`: the
    graph a saved module runs, nodes named `<module path>/<op>_<n>`, weights by their names,
    symbolic sizes shown as -1."""
    from graphc.capture import script

    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eval-mode notice; add_graph only draws the graph
        graph = script(model, inputs).graph
    names: dict[int, str] = {}
    nodes = []
    for v in graph.inputs:
        names[id(v)] = f"input/{v.name}"
        nodes.append(node_def_pb2.NodeDef(name=names[id(v)], op="IO Node", attr=_shape_attr([v.type])))
    parameters = {name for name, _ in list(model.named_parameters()) + list(model.named_buffers())}
    for name, v in graph.weights.items():
        names[id(v)] = name
        op = "Parameter" if name in parameters else "Constant"
        nodes.append(node_def_pb2.NodeDef(name=name, op=op, attr=_shape_attr([v.type])))
    for i, node in enumerate(graph.nodes):
        label = f"{node.scope}/{node.op}_{i}" if node.scope else f"{node.op}_{i}"
        for v in node.outputs:
            names[id(v)] = label
        args = [names[id(v)] for v in node.inputs if v is not None]
        attr = _shape_attr([v.type for v in node.outputs])
        nodes.append(node_def_pb2.NodeDef(name=label, op=node.op, input=args, attr=attr))
    for v in graph.outputs:
        nodes.append(
            node_def_pb2.NodeDef(
                name=f"output/{v.name}", op="IO Node", input=[names[id(v)]], attr=_shape_attr([v.type])
            )
        )
    return graph_pb2.GraphDef(node=nodes, versions=versions_pb2.VersionDef(producer=22))
