"""Near copies of training photos: the model folder keeps the audit's embedding of every photo it
was fitted on (provenance.py), and eval counts the scored photos within the audit's threshold of
one, in its JSON, its CSV and in words; older folders say the count is unknown."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file, save_file

import upright
from fixtures import write_photo
from upright import provenance
from upright.audit.duplicates import NEAR_THRESHOLD
from upright.files import file_sha256

CLASSES = {"a": ("astronaut", "chelsea (cat)", "rocket"), "b": ("coffee", "motorcycle", "camera(man)")}


def _crops(img: Image.Image) -> list[Image.Image]:
    w, h = img.size
    return [img.crop((left, top, left + w * 3 // 4, top + h * 3 // 4)).resize((400, 300))
            for left, top in ((0, 0), (w // 4, h // 4), (w // 4, 0))]


def _reencoded(path: Path, to: Path, scale: float = 0.9, quality: int = 95) -> None:
    """The photo resized and saved again: other bytes, the same picture."""
    img = Image.open(path).convert("RGB")
    img.resize((round(img.width * scale), round(img.height * scale))).save(to, "JPEG", quality=quality)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """DATA/train (bundled photos, 2 classes) and DATA/test with: an exact copy of a training
    photo, a re-encoded smaller copy of another, and a photo of a scene never trained on."""
    from upright.demo.data import load_sources

    sources = {name: img for name, _, img in load_sources()}
    if not all(n in sources for names in CLASSES.values() for n in names) or "grace_hopper" not in sources:
        pytest.skip("the bundled scikit-image/matplotlib photos are not installed")
    root = tmp_path_factory.mktemp("near")
    data = root / "data"
    for label, names in CLASSES.items():
        for name in names:
            for k, crop in enumerate(_crops(sources[name])):
                write_photo(data / "train" / label / f"{name.split()[0]}_{k}.jpg", crop)
    (data / "test" / "a").mkdir(parents=True)
    shutil.copy(data / "train" / "a" / "astronaut_0.jpg", data / "test" / "a" / "exact.jpg")
    _reencoded(data / "train" / "a" / "rocket_1.jpg", data / "test" / "a" / "near.jpg")
    write_photo(data / "test" / "b" / "new.jpg", _crops(sources["grace_hopper"])[0])
    model = root / "model"
    upright.train(data, model, augment="none", report=False)
    return data, model


def _by_name(result) -> dict[str, dict]:
    return {Path(p["path"]).name: p for p in result.photos}


def test_the_model_folder_keeps_the_audit_embedding_of_every_fitted_photo(project):
    data, model = project
    meta = json.loads((model / "model.json").read_text())
    rec = meta["fitted_on"]["embeddings"]
    assert rec["file"] == provenance.EMBEDDINGS_FILE and rec["backbone"] == "efficientnet-lite0"
    assert rec["view"] == "id" and rec["orientation"] == "upright" and rec["dtype"] == "float16"
    rows = load_file(str(model / provenance.EMBEDDINGS_FILE))[provenance.EMBEDDINGS_TENSOR]
    fitted = load_file(str(model / "head.safetensors"))[provenance.TENSOR]
    assert rows.dtype == np.float16 and rows.shape == (len(fitted), 1280) == (18, 1280)
    assert np.allclose(np.linalg.norm(rows.astype(np.float32), axis=1), 1.0, atol=1e-3)
    # row i is the photo whose fingerprint is row i of fitted_sha256
    photo = data / "train" / "b" / "coffee_2.jpg"
    row = int(np.flatnonzero((fitted == provenance.fingerprints([file_sha256(photo)])[0]).all(1))[0])
    m = upright.load_model(model)
    mine = m.embed_paths([photo]).vectors[0, 0]
    assert float(rows[row].astype(np.float32) @ (mine / np.linalg.norm(mine))) > 0.999


def test_eval_counts_a_resized_copy_but_not_a_new_scene(project, cli, tmp_path):
    data, model = project
    ev = upright.evaluate(model, data, rotation_check="none")
    photos = _by_name(ev)
    assert ev.n == 3 and ev.seen_in_training == 1 and photos["exact.jpg"]["seen_in_training"] is True
    assert ev.near_copies_of_training == 1
    assert photos["near.jpg"]["near_copy_of_training"] is True and photos["near.jpg"]["seen_in_training"] is False
    assert photos["new.jpg"]["near_copy_of_training"] is False and photos["new.jpg"]["seen_in_training"] is False
    assert photos["exact.jpg"]["near_copy_of_training"] is False  # counted as seen, not twice
    assert ev.accuracy_on_new_photos == (1.0 if photos["new.jpg"]["correct"] else 0.0)
    assert str(NEAR_THRESHOLD) in ev.near_copies_note
    # the cosines behind the verdicts, by the audit's own embedding: well clear of the threshold
    rows = load_file(str(model / provenance.EMBEDDINGS_FILE))[provenance.EMBEDDINGS_TENSOR]
    m = upright.load_model(model)
    near = provenance.nearest(rows, m.embed_paths([data / "test" / "a" / "near.jpg", data / "test" / "b" / "new.jpg"]
                                                  ).vectors[:, 0])
    assert near[0] >= NEAR_THRESHOLD + 0.01 and near[1] < NEAR_THRESHOLD - 0.2, near
    # the CLI: JSON field, CSV column and the sentence
    code, out, err = cli("eval", model, data, "--json", "--rotation-check", "none", "--csv", tmp_path / "rows.csv")
    r = json.loads(out)
    assert code == 0 and r["near_copies_of_training"] == 1 and r["seen_in_training"] == 1
    rows_csv = {Path(row["path"]).name: row for row in csv.DictReader((tmp_path / "rows.csv").open())}
    assert rows_csv["near.jpg"]["near_copy_of_training"] == "true" and rows_csv["new.jpg"]["near_copy_of_training"] == "false"
    code, out, err = cli("eval", model, data, "--rotation-check", "none")
    words = " ".join(out.replace("│", " ").split())  # the NOT A TEST panel's borders out
    assert code == 0 and "1 of 3 photos was used in training" in words and "only 1 is new to the model (1 is a near copy of a training photo)" in words


def test_eval_reuses_its_own_embeddings_for_the_near_copy_check_when_they_are_the_records(project, monkeypatch):
    """A default-backbone, upright, not fine-tuned model: eval's own 'id' embeddings are the
    record's, so no second pass runs, and the verdicts are those of the pass it saves."""
    import upright.pipeline.embed as embed
    from upright.evaluate import scored_records, training_overlap

    data, model = project
    passes: list[str] = []
    real = embed.embed_paths

    def counting(paths, **kw):
        passes.append(kw.get("description", ""))
        return real(paths, **kw)

    monkeypatch.setattr(embed, "embed_paths", counting)
    ev = upright.evaluate(model, data, rotation_check="none", progress=False)
    assert passes and "near-copy check" not in passes
    m = upright.load_model(model)
    assert m.backbone == m.info.fitted_on.embeddings.backbone and m.orient and m.backbone_state is None
    _, known, _, _ = scored_records(data, m.labels)
    passes.clear()
    again = training_overlap(m, known)  # no run given: the pass eval used to make
    assert passes == ["near-copy check"]
    photos = [_by_name(ev)[Path(r.path).name] for r in known]
    assert [p["near_copy_of_training"] for p in photos] == again.near.tolist()
    assert [p["seen_in_training"] for p in photos] == again.seen.tolist()
    passes.clear()
    other = training_overlap(m, known, run=(np.zeros((len(known), 1, 1280), np.float32), ["r90"]))
    assert passes == ["near-copy check"] and other.near.tolist() == again.near.tolist()  # 'id' not among them


def test_without_the_exact_copy_eval_says_partly_a_retest(project, cli, tmp_path):
    data, model = project
    test = tmp_path / "data"  # a folder per class: eval scores every photo
    shutil.copytree(data / "test", test)
    (test / "a" / "exact.jpg").unlink()
    code, out, err = cli("eval", model, test, "--rotation-check", "none")
    words = " ".join(out.split())
    assert code == 0 and "none of the 2 photos was used in training, but 1 is a near copy" in words, words
    assert f"cosine >= {NEAR_THRESHOLD}" in words and "accuracy on the other 1:" in words
    (test / "a" / "near.jpg").unlink()
    (test / "a" / "other.jpg").write_bytes((data / "test" / "b" / "new.jpg").read_bytes())
    ev = upright.evaluate(model, test, rotation_check="none")
    assert ev.near_copies_of_training == 0 and ev.seen_in_training == 0
    from upright.evaluate import seen_sentence

    assert seen_sentence(ev) == ("ok", "none of the 2 photos was used in training or is a near copy of one: a fair test.")


def _copy_model(model: Path, where: Path) -> Path:
    shutil.copytree(model, where)
    return where


def test_an_older_folder_says_the_count_is_unknown(project, tmp_path):
    data, model = project
    old = _copy_model(model, tmp_path / "old")
    meta = json.loads((old / "model.json").read_text())
    del meta["fitted_on"]["embeddings"]
    (old / "model.json").write_text(json.dumps(meta))
    (old / provenance.EMBEDDINGS_FILE).unlink()
    ev = upright.evaluate(old, data, rotation_check="none")
    assert ev.seen_in_training == 1 and ev.near_copies_of_training is None and ev.accuracy_on_new_photos is None
    assert all(p["near_copy_of_training"] is None for p in ev.photos)
    assert "keeps no embeddings of its training photos" in ev.near_copies_note
    from upright.evaluate import seen_sentence

    level, words = seen_sentence(ev)
    assert level == "error" and "1 of 3 photos was used in training" in words


def test_a_forged_record_is_not_believed(project, tmp_path):
    data, model = project
    forged = _copy_model(model, tmp_path / "forged")
    path = forged / provenance.EMBEDDINGS_FILE
    rows = load_file(str(path))[provenance.EMBEDDINGS_TENSOR]
    save_file({provenance.EMBEDDINGS_TENSOR: np.zeros_like(rows)}, str(path))  # "nothing is near"
    ev = upright.evaluate(forged, data, rotation_check="none")
    assert ev.near_copies_of_training is None and "sha256 does not match" in ev.near_copies_note
    (path).write_bytes(b"x" * (2 * rows.size + 5 * 2**20))  # too big to be the record: refused unread
    ev = upright.evaluate(forged, data, rotation_check="none")
    assert ev.near_copies_of_training is None and "more than the" in ev.near_copies_note
    assert upright.load_model(forged).predict([data / "test" / "b" / "new.jpg"])  # predict never reads it


def test_nearest_blocks_agree_with_one_product():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(300, 16)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    q = rng.normal(size=(50, 16)).astype(np.float32)
    q[3] = np.nan
    want = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ rows.T
    got = provenance.nearest(rows.astype(np.float16), q, block=7)
    assert np.isneginf(got[3]) and np.allclose(np.delete(got, 3), np.delete(want.max(1), 3), atol=2e-3)
    assert np.isneginf(provenance.nearest(rows[:0], q)).all()
