"""upright.torch: ImageFolder (torchvision's drop-in) and read_image, on real files, in a DataLoader with workers."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from fixtures import asym_picture, looks_upright, write_photo
from PIL import Image

from upright.errors import UnreadableImage, UprightError
from upright.torch import ImageFolder, pil_to_tensor, read_image


def _tree(root):
    """cat/ (2 photos, one stored sideways with tag 6, one in a sub-folder), dog/ (2, tags 3 and 8),
    a hidden folder, a non-image file, and a symlink loop."""
    pic = asym_picture()
    write_photo(root / "cat" / "a.jpg", pic, 6)
    write_photo(root / "cat" / "deeper" / "b.png", pic, None, fmt="PNG")
    write_photo(root / "dog" / "c.jpg", pic, 3)
    write_photo(root / "dog" / "d.jpg", pic, 8)
    write_photo(root / ".ipynb_checkpoints" / "x.jpg", pic)
    (root / "dog" / "notes.txt").write_text("not a photo")
    os.symlink(root / "cat", root / "cat" / "deeper" / "loop")
    return root


def to_tensor(img):  # module level: picklable for DataLoader workers
    return pil_to_tensor(img.resize((48, 32)))


def test_image_folder_is_torchvisions_shape_and_upright(tmp_path):
    ds = ImageFolder(_tree(tmp_path))
    assert ds.classes == ["cat", "dog"] and ds.class_to_idx == {"cat": 0, "dog": 1}
    assert [os.path.relpath(p, tmp_path) for p, _ in ds.samples] == ["cat/a.jpg", "cat/deeper/b.png", "dog/c.jpg", "dog/d.jpg"]
    assert ds.targets == [0, 0, 1, 1] and ds.imgs is ds.samples and len(ds) == 4 and ds.unreadable == []
    for i in range(len(ds)):
        img, target = ds[i]
        assert isinstance(img, Image.Image) and img.mode == "RGB" and looks_upright(img), ds.samples[i]
        assert target == ds.targets[i]
    # transform / target_transform / loader / is_valid_file behave as torchvision's
    ds2 = ImageFolder(tmp_path, transform=to_tensor, target_transform=lambda t: t * 10,
                      is_valid_file=lambda p: p.endswith(".jpg"))
    x, t = ds2[2]
    assert x.dtype == torch.uint8 and x.shape == (3, 32, 48) and t == 10 and len(ds2) == 3
    ds3 = ImageFolder(tmp_path, loader=lambda p: os.path.basename(p))
    assert ds3[0] == ("a.jpg", 0)
    with pytest.raises(ValueError):
        ImageFolder.make_dataset(str(tmp_path), ds.class_to_idx, (".jpg",), lambda p: True)


def test_empty_class_and_allow_empty(tmp_path):
    write_photo(tmp_path / "a" / "1.jpg", asym_picture())
    (tmp_path / "b").mkdir()
    with pytest.raises(FileNotFoundError, match="b"):
        ImageFolder(tmp_path)
    assert len(ImageFolder(tmp_path, allow_empty=True)) == 1
    with pytest.raises(FileNotFoundError):
        ImageFolder(tmp_path / "a")  # no class folders


def test_unreadable_files_left_out_with_one_warning_or_raised(tmp_path):
    _tree(tmp_path)
    (tmp_path / "cat" / "empty.jpg").write_bytes(b"")
    (tmp_path / "dog" / "text.png").write_text("hello, I am text")
    with pytest.warns(UserWarning) as rec:
        ds = ImageFolder(tmp_path)
    msgs = [str(w.message) for w in rec if "upright" in str(w.message)]
    assert len(msgs) == 1 and "empty.jpg" in msgs[0] and "text.png" in msgs[0]
    assert len(ds) == 4 and {os.path.basename(p) for p, _ in ds.unreadable} == {"empty.jpg", "text.png"}
    with pytest.raises(UprightError, match="2 unreadable"):
        ImageFolder(tmp_path, on_error="raise")


def test_body_corrupt_after_a_good_header_never_crashes_the_epoch(tmp_path):
    _tree(tmp_path)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8))
    data = write_photo(tmp_path / "dog" / "c.jpg", noise).read_bytes()
    (tmp_path / "dog" / "c.jpg").write_bytes(data[: len(data) // 2])  # header fine, pixels cut
    ds = ImageFolder(tmp_path)
    assert len(ds) == 4  # the header check cannot see it
    with pytest.warns(UserWarning, match="c.jpg"):
        img, target = ds[2]
    assert target == 1 and looks_upright(img)  # d.jpg stood in
    with pytest.raises(UnreadableImage):
        ImageFolder(tmp_path, on_error="raise")[2]


def test_dataloader_with_two_workers(tmp_path):
    ds = ImageFolder(_tree(tmp_path), transform=to_tensor)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    xs, ys = zip(*loader)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (4, 3, 32, 48) and y.tolist() == [0, 0, 1, 1]
    ref = torch.stack([to_tensor(Image.open(tmp_path / "cat" / "deeper" / "b.png").convert("RGB"))])
    assert torch.equal(x[1:2], ref)  # same pixels as a plain read of the untagged PNG
    for img in x:  # every one upright: top-left red, bottom-right yellow
        a = img.permute(1, 2, 0).numpy().astype(int)
        assert a[3, 3, 0] > 150 and a[3, 3, 2] < 90 and a[-4, -4, 0] > 150 and a[-4, -4, 2] < 90


def test_read_image_upright_tensor(tmp_path):
    p = write_photo(tmp_path / "s.jpg", asym_picture(), 6)
    t = read_image(p)
    assert t.dtype == torch.uint8 and t.shape == (3, 64, 96)  # stored 64x96 portrait, shown landscape
    assert looks_upright(Image.fromarray(t.permute(1, 2, 0).numpy()))
    assert torch.equal(read_image(torch.from_numpy(np.frombuffer(bytearray(p.read_bytes()), np.uint8))), t)
    assert read_image(p.read_bytes(), size=32).shape == (3, 32, 48)
    with pytest.raises(UnreadableImage):
        read_image(b"nope")


def test_loaders_on_the_real_orientation_examples(shared_data, tmp_path):
    """All 18 EXIF orientation examples come out the same way up (each set of 9 shows one picture),
    through read_image and through ImageFolder in a 2-worker DataLoader."""
    folder = shared_data / "exif-orientation-examples"
    for kind in ("Landscape", "Portrait"):
        (tmp_path / kind).mkdir()
        for k in range(9):
            (tmp_path / kind / f"{k}.jpg").symlink_to(folder / f"{kind}_{k}.jpg")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = {kind: read_image(folder / f"{kind}_1.jpg", size=64).float() for kind in ("Landscape", "Portrait")}
        for kind in ("Landscape", "Portrait"):
            for k in range(9):
                t = read_image(folder / f"{kind}_{k}.jpg", size=64).float()
                assert t.shape == ref[kind].shape, (kind, k)
                assert (t - ref[kind]).abs().mean() < 12, (kind, k)
        ds = ImageFolder(tmp_path, transform=small_tensor)
    items = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))  # one (image, label) each
    assert ds.classes == ["Landscape", "Portrait"] and len(items) == 18
    for (img, target), (path, _) in zip(items, ds.samples):
        want = ref[ds.classes[target]]
        assert img.shape == want.shape and (img.float() - want).abs().mean() < 12, path


def small_tensor(img):
    """About what read_image(path, size=64) gives, from the loader's full-size upright image."""
    w, h = img.size
    s = 64 / min(w, h)
    return pil_to_tensor(img.resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC))
