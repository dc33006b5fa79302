"""HDR10: the mastering display colour volume and content light level of a 10-bit BT.2020 / PQ clip come out
of the upscaled video with the same values (read back from the decoded frames' side data), with x265, x264 and
SVT-AV1; an encoder that cannot be given them says so in one warning line, and the API issues a warning."""
from __future__ import annotations

import struct
from fractions import Fraction
from types import SimpleNamespace

import pytest
from clips import decoded, hdr10_side_data, make_clip, tags

import wdsr_fast
from wdsr_fast.cli import main

BT2020, PQ, BT2020_NCL = 9, 16, 9
# A P3-D65 mastering display of 1000 cd/m2 down to 0.005 cd/m2 (x265's units: 0.00002 and 0.0001 cd/m2).
MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
LIGHT_LEVEL = (1000, 400)
# The values as FFmpeg gives them (x, y of red, green, blue, the white point; min, max luminance).
MASTERING = [Fraction(34000, 50000), Fraction(16000, 50000), Fraction(13250, 50000), Fraction(34500, 50000),
             Fraction(7500, 50000), Fraction(3000, 50000), Fraction(15635, 50000), Fraction(16450, 50000),
             Fraction(50, 10000), Fraction(10000000, 10000)]


@pytest.fixture(scope="module")
def hdr_clip(tmp_path_factory):
    """10-bit HEVC in Matroska, tagged BT.2020 / PQ, with HDR10 mastering display and light level SEI."""
    params = f"log-level=error:master-display={MASTER_DISPLAY}:max-cll={LIGHT_LEVEL[0]},{LIGHT_LEVEL[1]}"
    path = make_clip(tmp_path_factory.mktemp("hdr") / "hdr.mkv", codec="libx265", pix_fmt="yuv420p10le", bits=10,
                     frames=4, colour=(BT2020, PQ, BT2020_NCL), options={"x265-params": params})
    mastering, light = hdr10_side_data(path)
    assert mastering is not None and values(mastering) == MASTERING and light == LIGHT_LEVEL  # what the test holds
    return path


def values(mastering: tuple[int, ...]) -> list[Fraction]:
    assert mastering[20:] == (1, 1)  # has_primaries, has_luminance
    return [Fraction(mastering[i], mastering[i + 1]) for i in range(0, 20, 2)]


@pytest.mark.parametrize(("codec", "exact"), [(None, True), ("libx264", True), ("libsvtav1", False)])
def test_hdr10_metadata_is_kept(tmp_path, hdr_clip, video_weights, capsys, codec, exact):
    """x265 (the default for HEVC) and x264 write the same SEI values; SVT-AV1's metadata OBU holds them in its own
    fixed point (chromaticities in 1/65536, luminance in 1/256 and 1/16384 cd/m2)."""
    out = tmp_path / "out"
    assert main(["upscale", str(hdr_clip), "-o", str(out), "--weights", str(video_weights),
                 *(["--codec", codec] if codec else [])]) == 0
    dst = out / "hdr_x2.mkv"
    assert decoded(dst)[0].format.name == "yuv420p10le" and tags(dst) == (BT2020, PQ, BT2020_NCL, 1)
    mastering, light = hdr10_side_data(dst)
    assert mastering is not None and light == LIGHT_LEVEL
    if exact:
        assert values(mastering) == MASTERING
    else:
        got = values(mastering)
        assert [float(v) for v in got[:8]] == pytest.approx([float(v) for v in MASTERING[:8]], abs=1 / 65536)
        assert float(got[8]) == pytest.approx(0.005, abs=1 / 16384) and got[9] == 1000
    err = capsys.readouterr().err
    assert "HDR10 mastering display 1000/0.005 cd/m2, MaxCLL 1000, MaxFALL 400 kept" in err
    assert "warning" not in err


def test_an_encoder_that_cannot_carry_hdr10_says_so(tmp_path, hdr_clip, video_weights, upscaler, capsys):
    """FFV1 has no place for it in its bitstream, and PyAV cannot set the container's: one warning line, and the
    output indeed has none of it."""
    out = tmp_path / "out"
    assert main(["upscale", str(hdr_clip), "-o", str(out), "--weights", str(video_weights), "--codec", "ffv1"]) == 0
    assert hdr10_side_data(out / "hdr_x2.mkv") == (None, None)
    assert tags(out / "hdr_x2.mkv")[:3] == (BT2020, PQ, BT2020_NCL)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning")]
    assert warnings == [f"warning: {hdr_clip}: HDR10 metadata (mastering display 1000/0.005 cd/m2, MaxCLL 1000, "
                        f"MaxFALL 400) left out: PyAV cannot give it to ffv1 (--codec libx265, libx264 or libsvtav1 "
                        f"keep it)"]
    with pytest.warns(UserWarning, match=r"hdr\.mkv: HDR10 metadata .* left out: PyAV cannot give it to ffv1"):
        result = wdsr_fast.upscale_video(hdr_clip, tmp_path / "api.mkv", upscaler, codec="ffv1")
    assert len(result.warnings) == 1


class Side:
    """A frame's side data as PyAV gives it: a type (its str holds the name) and bytes."""

    def __init__(self, name: str, data: bytes):
        self.type, self.data = SimpleNamespace(name=name), data

    def __bytes__(self) -> bytes:
        return self.data


def test_parameters_partial_and_dynamic_metadata():
    """The x265 string is the one the clip was made with; mastering metadata without its primaries is left out
    with a warning (the encoders take it whole) while the light level is kept; dynamic metadata (HDR10+) is left out
    with a warning."""
    from wdsr_fast.io.video import HDR10, VideoWriter, hdr10_of, hdr10_options

    hdr = HDR10(tuple(MASTERING), LIGHT_LEVEL)
    assert hdr10_options("libx265", hdr) == {"x265-params": f"master-display={MASTER_DISPLAY}:max-cll=1000,400"}
    assert hdr10_options("hevc_nvenc", hdr) is None
    luminance_only = struct.pack("<22i", *[0] * 16, 50, 10000, 10000000, 10000, 0, 1)
    frame = SimpleNamespace(side_data=[Side("MASTERING_DISPLAY_METADATA", luminance_only),
                                       Side("CONTENT_LIGHT_LEVEL", struct.pack("<2I", *LIGHT_LEVEL))])
    partial = hdr10_of(frame)
    assert partial == HDR10(None, LIGHT_LEVEL, partial=True)
    writer = VideoWriter.__new__(VideoWriter)
    writer.encoder, writer.notes, writer.warnings = "libx265", [], []
    opts = {"x265-params": "log-level=error"}
    writer._carry_hdr10(partial, opts)
    assert opts == {"x265-params": "log-level=error:max-cll=1000,400"}
    assert writer.warnings == ["HDR10 mastering display metadata without its primaries or its luminance left out "
                               "(encoders take it whole)"]
    assert writer.notes == ["HDR10 MaxCLL 1000, MaxFALL 400 kept"]
    frame.side_data.append(Side("DYNAMIC_HDR_PLUS", b"\0" * 16))  # HDR10+ on the frames too: said, not kept
    writer.warnings = []
    writer._carry_hdr10(hdr10_of(frame), {})
    assert writer.warnings[0] == "HDR10+ dynamic metadata left out (only the static HDR10 metadata is carried)"
