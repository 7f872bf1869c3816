"""SummaryWriter writes real TensorBoard event files (read back here record by record)."""

import struct
from pathlib import Path

import pytest
from tensorboardX.proto import event_pb2, graph_pb2

import graphc
import graphc.nn as nn
from graphc.utils.tensorboard import SummaryWriter


def read_events(log_dir: Path) -> list:
    events = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        pos = 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            pos += 12  # length and its CRC
            events.append(event_pb2.Event.FromString(data[pos : pos + length]))
            pos += length + 4  # payload and its CRC
    return events


def test_scalars_images_histograms_text_and_graph(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    with SummaryWriter(str(tmp_path)) as writer:
        for step in range(3):
            writer.add_scalar("loss/train", graphc.tensor(1.0 / (step + 1)), step)
        writer.add_scalars("run", {"a": 1.0, "b": graphc.tensor(2.0)}, 0)
        writer.add_image("sample", graphc.rand(3, 8, 8), 0)
        writer.add_images("batch", graphc.rand(2, 3, 8, 8), 0)
        writer.add_histogram("weights", net[0].weight, 0)
        writer.add_text("note", "hello graphc", 0)
        writer.add_graph(net, graphc.randn(1, 1, 4, 4))
    events = read_events(tmp_path)
    scalars = [(e.step, v.simple_value) for e in events for v in e.summary.value if v.tag == "loss/train"]
    assert [s for s, _ in scalars] == [0, 1, 2]
    assert [v for _, v in scalars] == pytest.approx([1.0, 0.5, 1.0 / 3])  # float32 in the file
    tags = {v.tag for e in events for v in e.summary.value}
    assert {"sample", "batch", "weights", "note/text_summary"} <= tags
    images = [v.image for e in events for v in e.summary.value if v.tag == "sample"]
    assert images[0].height == 8 and images[0].encoded_image_string.startswith(b"\x89PNG")
    graphs = [graph_pb2.GraphDef.FromString(e.graph_def) for e in events if e.graph_def]
    nodes = {n.name: n for n in graphs[0].node}
    assert "0.weight" in nodes and "3.bias" in nodes and "input/input" in nodes
    linear = next(n for n in nodes.values() if n.op == "linear")
    assert linear.name.startswith("3/") and "3.weight" in linear.input
    assert nodes["output/output"].input == [linear.name]
    shape = linear.attr["_output_shapes"].list.shape[0]
    assert [d.size for d in shape.dim] == [-1, 3]  # the batch is symbolic


def test_graph_nodes_are_scoped_by_the_innermost_module():
    from graphc.utils.tensorboard import model_graph

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.act(self.conv(x)) * 2

    net = nn.Sequential(Block(), nn.Flatten(), nn.Linear(8, 3))
    ops = {n.op: n.name for n in model_graph(net, graphc.randn(1, 1, 4, 4)).node}
    assert ops["conv2d"].startswith("0/conv/") and ops["relu"].startswith("0/act/")
    assert ops["mul"].startswith("0/mul") and ops["linear"].startswith("2/")
    assert net.training  # captured in eval mode, then restored
