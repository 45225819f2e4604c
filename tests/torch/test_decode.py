"""PRE-6: image files are decoded as the published evaluation does, Pillow's
``convert("RGB")`` (``convert("L")`` for 1-channel checkpoints), alpha dropped rather than
composited; modes the spec does not define are refused naming the file and the mode."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import reference_numpy as oracle
from adaperceiver.cli import main
from adaperceiver.cli.common import CliError
from adaperceiver.cli.inputs import decode_image
from reference_numpy.preprocess import imagenet_eval

RNG = np.random.default_rng(7)


def _files(tmp_path) -> dict[str, object]:
    """An RGBA, LA, palette-with-transparency, 16-bit grey and 16-bit RGB PNG with random
    pixels and alpha (where a composite onto white would differ from dropping alpha)."""
    rgba = RNG.integers(0, 256, (9, 13, 4), dtype=np.uint8)
    la = RNG.integers(0, 256, (9, 13, 2), dtype=np.uint8)
    palette = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    files = {"rgba.png": Image.fromarray(rgba, "RGBA"), "la.png": Image.fromarray(la, "LA"),
             "p.png": palette,
             "grey16.png": Image.fromarray(RNG.integers(0, 600, (9, 13), dtype=np.uint16))}
    for name, image in files.items():
        image.save(tmp_path / name)
    rgb16 = RNG.integers(0, 65536, (9, 13, 3), dtype=np.uint16)
    _write_rgb16_png(tmp_path / "rgb16.png", rgb16)
    files["rgb16.png"] = None
    return files


def _write_rgb16_png(path, pixels: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), from the PNG specification."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    h, w, _ = pixels.shape
    rows = b"".join(b"\0" + pixels[i].astype(">u2").tobytes() for i in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2,
                                                                        0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels, target", [(3, "RGB"), (1, "L")])
def test_decode_equals_pillows_conversion(tmp_path, channels, target):
    """PRE-6: for RGBA, LA, palette with transparency, 16-bit grey and 16-bit RGB PNGs the
    decoded (C, H, W) uint8 array is Pillow's own convert(target), alpha dropped."""
    files = _files(tmp_path)
    with Image.open(tmp_path / "grey16.png") as grey16:
        assert grey16.mode == "I;16"
    for name in files:
        with Image.open(tmp_path / name) as image:
            expected = np.asarray(image.convert(target)).reshape(9, 13, channels)
        got = decode_image(tmp_path / name, channels)
        assert got.dtype.is_floating_point is False and got.shape == (channels, 9, 13)
        np.testing.assert_array_equal(got.numpy(), expected.transpose(2, 0, 1), err_msg=name)
    with Image.open(tmp_path / "rgba.png") as image:
        rgba = np.asarray(image)
    if channels == 3:  # alpha is dropped: not the composite onto white of earlier versions
        np.testing.assert_array_equal(decode_image(tmp_path / "rgba.png", 3).numpy(),
                                      rgba[..., :3].transpose(2, 0, 1))


def test_imagenet_input_of_an_rgba_file_is_the_oracles_on_the_dropped_alpha(tmp_path, capsys):
    """PRE-6 then PRE-1..3: an RGBA photo's model input is the oracle's transform of its
    RGB channels (within one uint8 step), whatever its alpha."""
    from adaperceiver.cli import checkpoint
    from adaperceiver.preprocess import preprocess

    config = oracle.tiny_config()
    config.update(num_classes=1000, img_size=16)
    oracle.save_checkpoint(tmp_path / "ck", config, oracle.random_weights(config, seed=1))
    rgba = RNG.integers(0, 256, (30, 41, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "photo.png")
    loaded = checkpoint.load(str(tmp_path / "ck"))
    got = preprocess(decode_image(tmp_path / "photo.png", 3), loaded.preprocessing, 16)
    expected = imagenet_eval(rgba[..., :3].transpose(2, 0, 1), 16)
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1 / 255 / 0.26 + 1e-6)
    assert main(["classify", "--checkpoint", str(tmp_path / "ck"),
                 str(tmp_path / "photo.png")]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("mode, array", [
    ("F", np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)),
    ("I", np.arange(64, dtype=np.int32).reshape(8, 8) * 1000),
])
def test_undefined_modes_are_refused_naming_file_and_mode(tmp_path, capsys, mode, array):
    """PRE-6: a float TIFF (mode F) or 32-bit integer TIFF (mode I) is an error naming the
    file and its mode, never converted (it was classified silently wrong)."""
    path = tmp_path / f"{mode}.tif"
    Image.fromarray(array).save(path)
    with Image.open(path) as image:
        assert image.mode == mode
    with pytest.raises(CliError, match=rf"{path}: image mode {mode} is not supported"):
        decode_image(path, 1)
    assert main(["classify", str(path)]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"image mode {mode} is not supported" in err
