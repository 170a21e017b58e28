"""check_graph and the build-shape checks (gpunn/io/graph_check.py): a graph config is read as
hostile JSON - wrong types, unknown refs, cycles, oversized graphs - and ordered when sound."""
from __future__ import annotations

import copy

import pytest

from gpunn.io import graph_check
from gpunn.io.graph_check import GraphConfigError, check_build_shapes, check_graph, check_shape_tree

LAYER = {"class": "Dense", "config": {"units": 2}, "trainable": True}


def graph():
    """x -> d1 -> (d2 called twice: on x's d1 and on itself) -> output."""
    return {
        "inputs": [{"name": "x", "shape": [3]}],
        "layers": [
            {"name": "d2", "layer": LAYER, "inbound_nodes": [[["d1", 0, 0]], [["d2", 0, 0]]]},
            {"name": "d1", "layer": LAYER, "inbound_nodes": [[["x", 0, 0]]]},
            {"name": "add", "layer": {"class": "Add", "config": {}}, "inbound_nodes": [[["d2", 1, 0], ["d1", 0, 0]]]},
        ],
        "outputs": [["add", 0, 0]],
        "output_names": ["add"],
    }


def test_a_sound_graph_is_ordered():
    g = check_graph(graph(), "t")
    order = [(g["layers"][li]["name"], ni) for li, ni in g["order"]]
    assert order.index(("d1", 0)) < order.index(("d2", 0)) < order.index(("d2", 1)) < order.index(("add", 0))
    assert g["inputs"] == [("x", (3,))] and g["output_names"] == ["add"]


def edited(fn):
    g = copy.deepcopy(graph())
    fn(g)
    return g


@pytest.mark.parametrize("edit, match", [
    (lambda g: g.pop("outputs"), "must have exactly the keys"),
    (lambda g: g.update(extra=1), "must have exactly the keys"),
    (lambda g: g.update(inputs=[]), "'graph.inputs' must hold between 1"),
    (lambda g: g["inputs"][0].update(shape=[0]), "must be a non-empty list of positive ints"),
    (lambda g: g["inputs"][0].update(shape=[2 ** 20, 2 ** 20]), "more than"),
    (lambda g: g["inputs"][0].update(name=""), "non-empty str"),
    (lambda g: g["inputs"].append({"name": "x", "shape": [3]}), "input name 'x' is used twice"),
    (lambda g: g["layers"][0].update(name="x"), "given to two layers"),
    (lambda g: g["layers"][1].update(name="d2"), "given to two layers"),
    (lambda g: g["layers"][0].update(layer="Dense"), r"layers\[0\].layer' must be an object"),
    (lambda g: g["layers"][0].update(inbound_nodes=[]), "must hold between 1"),
    (lambda g: g["layers"][0]["inbound_nodes"][0].append(["d1", 0]), "must be a tensor ref"),
    (lambda g: g["layers"][0]["inbound_nodes"][0].append(["d1", True, 0]), "must be an int"),
    (lambda g: g["layers"][0]["inbound_nodes"][0].append(["d1", 0, 1]), "must be 0"),
    (lambda g: g["layers"][0]["inbound_nodes"][0].append(["ghost", 0, 0]), "'ghost', which is neither an input"),
    (lambda g: g["layers"][0]["inbound_nodes"][0].append(["d1", 5, 0]), "call 5 of layer 'd1', which is called 1"),
    (lambda g: g["layers"][1]["inbound_nodes"][0].append(["x", 1, 0]), "an input has only call 0"),
    (lambda g: g["layers"][1]["inbound_nodes"][0].append(["add", 0, 0]), "the graph has a cycle"),
    (lambda g: g["layers"][0]["inbound_nodes"].__setitem__(0, [["d2", 0, 0]]), "the graph has a cycle"),
    (lambda g: g.update(outputs=[["nope", 0, 0]]), "'nope', which is neither"),
    (lambda g: g.update(output_names=["a", "b"]), "between 1 and 1"),
    (lambda g: g.update(outputs=[["add", 0, 0], ["d1", 0, 0]], output_names=["o", "o"]), "repeats a name"),
    (lambda g: g.update(layers={}), "'graph.layers' must be a list"),
])
def test_defects_are_named(edit, match):
    with pytest.raises(GraphConfigError, match=match):
        check_graph(edited(edit), "load")


def test_size_limits(monkeypatch):
    monkeypatch.setattr(graph_check, "MAX_GRAPH_NODES", 3)
    with pytest.raises(GraphConfigError, match="more than 3 layer calls"):
        check_graph(edited(lambda g: g["layers"][1]["inbound_nodes"].append([["x", 0, 0]])), "load")
    monkeypatch.setattr(graph_check, "MAX_GRAPH_LAYERS", 2)
    with pytest.raises(GraphConfigError, match="'graph.layers' must hold between 0 and 2"):
        check_graph(graph(), "load")


def test_not_a_graph():
    with pytest.raises(GraphConfigError, match="'graph' must be an object"):
        check_graph([], "load")


def test_shape_trees_and_build_shapes():
    assert check_shape_tree([2, 3], "s", "t") == (2, 3)
    assert check_shape_tree([[2], [3, 1]], "s", "t") == ((2,), (3, 1))
    assert check_build_shapes({"a": [4], "b.c": [[2], [2]]}, "t") == {"a": (4,), "b.c": ((2,), (2,))}
    for bad in ([], [[]], ["2"], [True], [[2], 3]):
        with pytest.raises(GraphConfigError):
            check_shape_tree(bad, "s", "t")
    with pytest.raises(GraphConfigError, match="'built_shapes' must be an object"):
        check_build_shapes([], "t")
    with pytest.raises(GraphConfigError, match="non-empty str"):
        check_build_shapes({"": [2]}, "t")
