"""``wdsr-fast upscale`` on videos, end to end: each property a user counts on is read back from the file written
(frames, timestamps, duration, sound, subtitles, colour tags, rotation, bit depth), not only that a file appears."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from clips import av, decoded, frame_times, make_clip, packets, stream_end, tags
from PIL import Image

from wdsr_fast.cli import main
from wdsr_fast.io.video import clip_frames


def upscale(*argv) -> int:
    return main(["upscale", *map(str, argv)])


def test_h264_aac_mp4(tmp_path, clips, video_weights, capsys):
    """clip.mp4 -> out/clip_x2.mp4: every frame twice the size at the same times, H.264 again, BT.709 tags, the
    AAC packets copied byte for byte, and one line saying so."""
    src, out = clips["h264"], tmp_path / "out"
    assert upscale(src, "-o", out, "--weights", video_weights) == 0
    dst = out / "h264_x2.mp4"
    assert sorted(p.name for p in out.iterdir()) == ["h264_x2.mp4"]  # no temporary file left
    before, after = decoded(src), decoded(dst)
    assert len(after) == len(before) == 12
    assert (after[0].width, after[0].height) == (128, 96)
    assert frame_times(dst) == frame_times(src)
    assert stream_end(dst) == pytest.approx(stream_end(src), abs=1e-6)
    with av.open(str(dst)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert container.duration == pytest.approx(av.open(str(src)).duration, abs=1000)
    assert tags(dst) == tags(src) == (1, 1, 1, 1)
    assert packets(dst, "audio") == packets(src, "audio") and len(packets(src, "audio")) > 10
    captured = capsys.readouterr()
    assert "1 of 1 videos upscaled x2" in captured.out
    assert f"{src} -> {dst} (H.264 yuv420p 64x48" in captured.err
    assert "libx264 yuv420p 128x96 crf 17, 12 frames; audio aac (fra) copied" in captured.err
    assert "bound by" in captured.err


def test_10bit_hevc_mkv_stays_10bit(tmp_path, clips, bundled, capsys):
    """10-bit HEVC goes through the 16-bit path and comes out 10-bit HEVC (Main 10); its frames are the image
    path's output on the decoded 16-bit frames, up to the encoder's loss (the bundled weights: a real picture)."""
    src, out = clips["hevc10"], tmp_path / "out"
    assert upscale(src, "-o", out, "--scale", 2) == 0
    dst = out / "hevc10_x2.mkv"
    after = decoded(dst)
    assert after[0].format.name == "yuv420p10le" and len(after) == 6
    with av.open(str(dst)) as container:
        assert container.streams.video[0].codec_context.name == "hevc"
        assert container.streams.video[0].profile == "Main 10"
    assert frame_times(dst) == frame_times(src)
    assert tags(dst) == (1, 1, 1, 1)
    for (lr, _), (sr, _) in list(zip(clip_frames(src), clip_frames(dst), strict=True))[::2]:
        assert lr.dtype == np.uint16 and sr.dtype == np.uint16
        expected = bundled.upscale_pixels(lr).astype(np.float64)
        mse = np.mean((sr.astype(np.float64) - expected) ** 2)
        assert 10 * np.log10(65535.0**2 / mse) > 38  # x265 at CRF 20, 4:2:0, on a 128x96 frame
        assert len(np.unique(np.round(sr[..., 1] / 65535 * 1023))) > 256  # more levels than 8 bits hold
    assert "10-bit kept (16-bit path)" in capsys.readouterr().err


def test_variable_frame_rate_keeps_every_timestamp(tmp_path, clips, video_weights):
    src, out = clips["vfr"], tmp_path / "out"
    assert upscale(src, "-o", out, "--weights", video_weights) == 0
    dst = out / "vfr_x2.mkv"
    times = frame_times(src)
    assert np.allclose(np.diff(times), [0.04, 0.07, 0.04, 0.11, 0.04, 0.033, 0.067, 0.12, 0.04])  # irregular
    assert frame_times(dst) == times
    assert stream_end(dst) == pytest.approx(stream_end(src), abs=1e-6)
    assert packets(dst, "audio") == packets(src, "audio")


@pytest.mark.parametrize("name", ["subs_mkv", "subs_mp4"])
def test_subtitles_are_copied(tmp_path, clips, video_weights, name, capsys):
    src, out = clips[name], tmp_path / "out"
    assert upscale(src, "-o", out, "--weights", video_weights) == 0
    dst = out / f"{src.stem}_x2{src.suffix}"
    cues = packets(src, "subtitle")
    assert len(cues) == 2 and packets(dst, "subtitle") == cues
    with av.open(str(dst)) as container:
        assert container.streams.subtitles[0].metadata.get("language") == "eng"
    assert "copied" in capsys.readouterr().err


def test_rotation_is_carried_over(tmp_path, clips, video_weights, capsys):
    """A phone clip stored sideways with a display matrix: the frames are upscaled as stored and the matrix is
    written again, so players turn the output as they turn the input."""
    src, out = clips["rotated"], tmp_path / "out"
    assert upscale(src, "-o", out, "--weights", video_weights) == 0
    first = decoded(out / "phone_x2.mp4")[0]
    assert first.rotation == decoded(src)[0].rotation == 90
    assert (first.width, first.height) == (96, 64)
    assert "rotation 90 degrees kept" in capsys.readouterr().err


def test_folders_mix_images_and_videos(tmp_path, clips, video_weights, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.full((10, 12, 3), 128, np.uint8)).save(folder / "still.png")
    make_clip(folder / "sub" / "clip.mp4", frames=3, width=32, height=24)
    (folder / "notes.txt").write_text("not a picture")
    out = tmp_path / "out"
    assert upscale(folder, "-o", out, "--weights", video_weights, "--recursive") == 0
    assert (out / "still_x2.png").exists() and (out / "sub" / "clip_x2.mp4").exists()
    captured = capsys.readouterr()
    assert "1 of 1 images upscaled" in captured.out and "1 of 1 videos upscaled" in captured.out


def test_ext_chooses_the_container(tmp_path, clips, video_weights):
    """MP4 -> MKV: the same frames and sound packets. Matroska holds no negative timestamp, so the muxer starts
    the AAC encoder's priming packet (at -21.3 ms in the MP4) at 0 and every stream with it: sound and pictures
    keep their timing relative to each other, to Matroska's millisecond."""
    src, out = clips["h264"], tmp_path / "out"
    assert upscale(src, "-o", out, "--weights", video_weights, "--ext", "mkv") == 0
    dst = out / "h264_x2.mkv"
    with av.open(str(dst)) as container:
        assert container.format.name.startswith("matroska")
        assert container.streams.video[0].codec_context.name == "h264"
        assert len(container.streams.audio) == 1
    sound_before, sound_after = packets(src, "audio"), packets(dst, "audio")
    assert [p[2] for p in sound_after] == [p[2] for p in sound_before]
    shift = sound_after[0][0] - sound_before[0][0]
    assert shift == pytest.approx(0.0213, abs=0.001)
    assert np.allclose([p[0] - shift for p in sound_after], [p[0] for p in sound_before], atol=0.001)
    assert np.allclose(np.array(frame_times(dst)) - shift, frame_times(src), atol=0.001)


def test_webm_refuses_what_it_cannot_hold(tmp_path, clips, video_weights, capsys):
    """WebM holds no AAC: the video is refused by name with the way out, never written without its sound."""
    out = tmp_path / "out"
    assert upscale(clips["h264"], "-o", out, "--weights", video_weights, "--ext", "webm") == 1
    err = capsys.readouterr().err
    assert f"error: {clips['h264']}: its audio aac (fra) cannot be copied into webm: choose --ext mkv" in err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(("codec", "crf", "preset", "name", "pix_fmt"), [
    ("libx265", "24", "ultrafast", "hevc", "yuv420p"),
    ("libvpx-vp9", "30", "8", "vp9", "yuv420p"),
    ("libsvtav1", "35", "12", "av1", "yuv420p"),
    ("ffv1", None, None, "ffv1", "yuv420p"),
])
def test_codec_crf_and_preset(tmp_path, video_weights, codec, crf, preset, name, pix_fmt):
    src = make_clip(tmp_path / "clip.mkv", frames=4, width=32, height=24)
    out = tmp_path / "out"
    argv = [src, "-o", out, "--weights", video_weights, "--codec", codec]
    argv += ["--crf", crf] if crf else []
    argv += ["--preset", preset] if preset else []
    assert upscale(*argv) == 0
    dst = out / "clip_x2.mkv"
    with av.open(str(dst)) as container:
        assert container.streams.video[0].codec_context.codec.canonical_name == name
    frames = decoded(dst)
    assert len(frames) == 4 and frames[0].format.name == pix_fmt and frames[0].width == 64
    assert frame_times(dst) == frame_times(src)


def test_ffv1_refuses_a_crf(tmp_path, clips, video_weights, capsys):
    assert upscale(clips["h264"], "-o", tmp_path / "out", "--weights", video_weights, "--codec", "ffv1",
                   "--crf", "10") == 1
    assert "ffv1 is lossless: --crf does not apply" in capsys.readouterr().err


def test_existing_output_is_kept_unless_overwrite(tmp_path, clips, video_weights, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "h264_x2.mp4").write_bytes(b"precious")
    assert upscale(clips["h264"], "-o", out, "--weights", video_weights) == 0
    assert (out / "h264_x2.mp4").read_bytes() == b"precious"
    assert "skipped" in capsys.readouterr().err
    assert upscale(clips["h264"], "-o", out, "--weights", video_weights, "--overwrite") == 0
    assert len(decoded(out / "h264_x2.mp4")) == 12


def test_other_containers_and_codecs_fall_back(tmp_path, video_weights, capsys):
    """MPEG-4 Part 2 in AVI: no encoder of its family is used here and AVI is not written: H.264 in Matroska."""
    src = make_clip(tmp_path / "old.avi", codec="mpeg4", frames=4, width=32, height=24, tags=False)
    out = tmp_path / "out"
    assert upscale(src, "-o", out, "--weights", video_weights) == 0
    dst = out / "old_x2.mkv"
    assert len(decoded(dst)) == 4 and frame_times(dst) == pytest.approx(frame_times(src), abs=1e-3)  # ms in MKV
    err = capsys.readouterr().err
    assert "MPEG-4 yuv420p 32x24" in err and "libx264 yuv420p 64x48" in err and "written as mkv (avi is read" in err
    assert "untagged colour matrix: BT.601 (SMPTE 170M) assumed (24 lines), and tagged" in err
    assert tags(dst)[2] == 6  # the matrix it was converted with, so that players do not guess BT.709 from the size


def test_batch_gives_the_frames_of_one_at_a_time(tmp_path, video_weights):
    src = make_clip(tmp_path / "rgb.mkv", codec="ffv1", pix_fmt="bgr0", frames=5, width=32, height=24)
    for batch in ("1", "3"):
        assert upscale(src, "-o", tmp_path / batch, "--weights", video_weights, "--batch", batch, "--codec",
                       "ffv1") == 0
    one, three = decoded(tmp_path / "1" / "rgb_x2.mkv"), decoded(tmp_path / "3" / "rgb_x2.mkv")
    assert [f.pts for f in three] == [f.pts for f in one] and len(one) == 5
    for a, b in zip(one, three, strict=True):
        assert np.abs(a.to_ndarray(format="rgb24").astype(int) - b.to_ndarray(format="rgb24")).max() <= 1


def test_chapters_metadata_attachments_and_aspect_are_kept(tmp_path, video_weights):
    """A Matroska film's title, chapters, an attached font, a forced German subtitle and anamorphic pixels."""
    src = tmp_path / "film.mkv"
    with av.open(str(src), "w") as out:
        out.metadata["title"] = "A film"
        video = out.add_stream("libx264", rate=24)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        video.codec_context.sample_aspect_ratio = Fraction(4, 3)
        text = out.add_mux_stream("subrip")
        text.time_base, text.disposition = Fraction(1, 1000), av.stream.Disposition.forced
        text.metadata.update(language="deu", title="Forced")
        out.add_attachment("font.ttf", "font/ttf", b"\0\1not really a font")
        out.set_chapters([{"id": k + 1, "start": 250 * k, "end": 250 * (k + 1), "time_base": Fraction(1, 1000),
                           "metadata": {"title": name}} for k, name in enumerate(["One", "Two"])])
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 40 * i, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        cue = av.Packet(b"Achtung")
        cue.stream, cue.time_base, cue.pts, cue.dts, cue.duration = text, Fraction(1, 1000), 50, 50, 100
        out.mux(cue)
    assert upscale(src, "-o", tmp_path / "out", "--weights", video_weights) == 0

    def described(path):
        with av.open(str(path)) as container:
            streams = [(s.type, dict(s.metadata), int(s.disposition), getattr(s, "sample_aspect_ratio", None),
                        s.data if s.type == "attachment" else None) for s in container.streams]
            return container.metadata.get("title"), container.chapters(), streams

    assert described(tmp_path / "out" / "film_x2.mkv") == described(src)


def test_a_container_that_cannot_hold_the_codec(tmp_path, video_weights, capsys):
    """FFV1 into MOV: the default falls back to H.264; asked for, it is refused with the container that holds it."""
    src = make_clip(tmp_path / "lossless.mkv", codec="ffv1", frames=3, width=32, height=24)
    assert upscale(src, "-o", tmp_path / "a", "--weights", video_weights, "--ext", "mov") == 0
    assert decoded(tmp_path / "a" / "lossless_x2.mov")[0].width == 64
    assert "libx264 yuv420p 64x48" in capsys.readouterr().err
    assert upscale(src, "-o", tmp_path / "b", "--weights", video_weights, "--ext", "mov", "--codec", "ffv1") == 1
    assert "mov cannot hold FFV1 video (ffv1): choose --ext mkv" in capsys.readouterr().err
