"""`upright eval --onnx FILE DATA`: a classifier trained elsewhere (here: a tiny torch conv net exported
to ONNX) scored with the same accuracy figures and the 0/90/180/270 rotation check."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from fixtures import STRIPES, stripes_picture, write_photo


class StripeNet(torch.nn.Module):
    """Hand-weighted, and orientation-sensitive by construction: horizontal vs vertical stripes by
    which gradient direction carries more energy. Input [N, 3, S, S] scaled to [0, 1]."""

    def __init__(self, nhwc: bool = False, probabilities: bool = False):
        super().__init__()
        self.nhwc, self.probabilities = nhwc, probabilities
        self.conv = torch.nn.Conv2d(1, 2, kernel_size=3, padding=1, bias=False)
        with torch.no_grad():
            dy = torch.tensor([[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]])  # responds to horizontal stripes
            self.conv.weight.copy_(torch.stack([dy, dy.T])[:, None])

    def forward(self, x):
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        energy = self.conv(x.mean(dim=1, keepdim=True)).abs().mean(dim=(2, 3))  # [N, 2]: horizontal, vertical
        logits = 20 * (energy - energy.mean(dim=1, keepdim=True))
        return torch.softmax(logits, dim=1) if self.probabilities else logits


def export(net, path, size=64, metadata=None, channels=3):
    import onnx

    shape = (1, size, size, channels) if net.nhwc else (1, channels, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), (torch.zeros(shape),), str(path), dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["scores"],
                          dynamic_axes={"image": {0: "n"}, "scores": {0: "n"}})
    if metadata:
        g = onnx.load(str(path))
        for k, v in metadata.items():
            g.metadata_props.add(key=k, value=v)
        onnx.save(g, str(path))
    return path


@pytest.fixture(scope="module")
def stripes_data(tmp_path_factory):
    """horizontal/, vertical/: 3 photos each; one vertical photo stored sideways (EXIF 6), whose
    stored pixels show horizontal stripes: right only when read upright."""
    root = tmp_path_factory.mktemp("ext") / "data"
    for label in STRIPES:
        for i in range(3):
            write_photo(root / label / f"{i}.jpg", stripes_picture(label, 50 + i, 200, 150),
                        6 if (label, i) == ("vertical", 0) else None)
    return root


def test_external_onnx_accuracy_rotation_check_and_unknown_provenance(stripes_data, tmp_path, cli):
    f = export(StripeNet(), tmp_path / "stripes.onnx")
    code, out, err = cli("eval", "--onnx", f, stripes_data, "--labels", "horizontal,vertical", "--std", "255",
                         "--json", "--csv", tmp_path / "rows.csv")
    assert code == 0, err
    d = json.loads(out)
    assert d["accuracy"] == 1.0 and d["n"] == 6 and d["split"] == "all" and d["labels"] == list(STRIPES)
    assert d["rotations"] == {"0": 1.0, "90": 0.0, "180": 1.0, "270": 0.0}  # it learned "which way is up"
    assert d["seen_in_training"] is None and d["model_format"] == "onnx" and "NCHW float32 64 x 64" in d["input_contract"]
    assert "top_k_accuracy" in d and d["confusion"] == [[3, 0], [0, 3]]
    assert ",," in (tmp_path / "rows.csv").read_text().splitlines()[1]  # seen_in_training empty, not false
    report = tmp_path / "eval.html"
    code, out, _ = cli("eval", "--onnx", f, stripes_data, "--labels", "horizontal,vertical", "--report", report)
    assert code == 0 and "trained elsewhere" in " ".join(out.split()) and "0.00" in out
    assert "trained elsewhere" in report.read_text()


def test_nhwc_probabilities_and_labels_file_or_metadata(stripes_data, tmp_path, cli):
    labels = tmp_path / "labels.txt"
    labels.write_text("horizontal\nvertical\n")
    f = export(StripeNet(nhwc=True, probabilities=True), tmp_path / "nhwc.onnx", size=48)
    code, out, err = cli("eval", "--onnx", f, stripes_data, "--labels", labels, "--mean", "0,0,0", "--std", "255",
                         "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["accuracy"] == 1.0 and d["rotations"]["90"] == 0.0 and "NHWC" in d["input_contract"]
    meta = {"labels": json.dumps(list(STRIPES)),
            "preprocessing": json.dumps({"input_size": 64, "resize_short_side": 70, "mean": [0, 0, 0],
                                         "std": [255, 255, 255], "layout": "nchw"})}
    g = export(StripeNet(), tmp_path / "meta.onnx", metadata=meta)
    code, out, err = cli("eval", "--onnx", g, stripes_data, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["accuracy"] == 1.0 and "resized to 70" in d["input_contract"]
    from upright.external import evaluate_onnx

    r = evaluate_onnx(g, stripes_data, rotations=False)
    assert r.accuracy == 1.0 and set(r.rotations) == {"0"} and all(p["seen_in_training"] is None for p in r.photos)


def test_bad_onnx_files_and_options_are_one_line_errors(stripes_data, tmp_path, cli):
    import onnx
    from onnx import TensorProto, helper

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    text = tmp_path / "text.onnx"
    text.write_text("ir_version: 8\n" * 20)
    gray = export(_Gray(), tmp_path / "g.onnx", channels=1)
    two_in = tmp_path / "two.onnx"
    node = helper.make_node("Add", ["a", "b"], ["c"])
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, 8, 8]) for n in "abc"]
    onnx.save(helper.make_model(helper.make_graph([node], "g", vi[:2], vi[2:]),
                                opset_imports=[helper.make_opsetid("", 17)]), str(two_in))
    forged = tmp_path / "forged.onnx"
    bad = onnx.load(str(export(StripeNet(), tmp_path / "ok.onnx")))
    bad.graph.node[0].op_type = "NoSuchOp"
    forged.write_bytes(bad.SerializeToString())
    ok = tmp_path / "ok.onnx"
    cases = [
        (empty, ["--labels", "a,b"], "empty"),
        (junk, ["--labels", "a,b"], "ONNX"),
        (text, ["--labels", "a,b"], "ONNX"),
        (tmp_path / "missing.onnx", ["--labels", "a,b"], "cannot read"),
        (tmp_path, ["--labels", "a,b"], "not a regular file"),
        (gray, ["--labels", "a,b"], "channels"),
        (two_in, ["--labels", "a,b"], "2 inputs"),
        (forged, ["--labels", "horizontal,vertical"], "invalid ONNX"),
        (ok, [], "no labels"),
        (ok, ["--labels", "a,b,c"], "one score per label"),
        (ok, ["--labels", "a"], "at least 2"),
        (ok, ["--labels", "a,b", "--input-size", "32"], "takes 64"),
        (ok, ["--labels", "a,b", "--std", "0"], "std > 0"),
        (ok, ["--labels", "a,b", "--mean", "x"], "--mean"),
    ]
    for f, extra, words in cases:
        code, out, err = cli("eval", "--onnx", f, stripes_data, *extra)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (f.name, extra, err)
    for argv in (["eval", stripes_data], ["eval", "--labels", "a,b", stripes_data, stripes_data],
                 ["eval", "--onnx", ok, stripes_data, stripes_data]):
        code, _, err = cli(*argv)
        assert code == 2 and len(err.strip().splitlines()) == 1, (argv, err)


class _Gray(torch.nn.Module):
    """A one-channel input: eval feeds RGB, so this is refused."""

    nhwc = False

    def forward(self, x):
        return x.mean(dim=(2, 3)).repeat(1, 2)


def test_chunks_and_unreadable_photos_keep_rows_aligned(stripes_data, tmp_path, monkeypatch):
    import shutil

    import upright.external as external

    data = tmp_path / "data"
    shutil.copytree(stripes_data, data)
    (data / "horizontal" / "1b.jpg").write_bytes(b"not a jpeg")  # sorts between 1.jpg and 2.jpg
    monkeypatch.setattr(external, "CHUNK", 2)
    r = external.evaluate_onnx(export(StripeNet(), tmp_path / "s.onnx"), data, labels=list(STRIPES),
                               std=(255.0,) * 3)
    assert r.accuracy == 1.0 and r.n == 6 and [u["path"].endswith("1b.jpg") for u in r.unreadable] == [True]
    rows = {p["path"].rsplit("/", 2)[-2] + "/" + p["path"].rsplit("/", 1)[-1]: p for p in r.photos}
    assert rows["horizontal/1b.jpg"]["error"] and rows["horizontal/2.jpg"]["predicted"] == "horizontal"
    assert all(p["predicted"] == p["label"] for p in r.photos if not p["error"])
