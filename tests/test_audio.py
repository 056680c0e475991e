import numpy as np
import pytest
import soundfile as sf
from conftest import make_signal, write_wav

from hmmclf.data.audio import load_clip, resample
from hmmclf.utils.errors import AudioError


@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
def test_sample_formats_are_read(tmp_path, rng, subtype):
    path = write_wav(tmp_path / f"{subtype}.wav", make_signal("wheeze", 0.5, 8000, rng), 8000, subtype)
    clip = load_clip(path, 4000)
    assert clip.sample_rate == 4000 and clip.original_rate == 8000
    assert clip.samples.dtype == np.float32
    assert abs(len(clip.samples) - 2000) <= 2
    assert clip.duration == pytest.approx(0.5)


def test_multichannel_is_mixed_down(tmp_path, rng):
    mono = make_signal("normal", 0.5, 4000, rng)
    stereo = np.stack([mono, mono, mono], axis=1)
    path = write_wav(tmp_path / "three.wav", stereo, 4000)
    clip = load_clip(path, 4000)
    assert clip.channels == 3
    np.testing.assert_allclose(clip.samples, mono, atol=1e-3)


def test_upsampling_from_a_low_rate(tmp_path, rng):
    path = write_wav(tmp_path / "low.wav", make_signal("normal", 0.5, 2000, rng), 2000)
    assert len(load_clip(path, 4000).samples) == pytest.approx(2000, abs=2)


def test_resampler_removes_aliases():
    sr = 44100
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * 3000 * t).astype(np.float32)  # above the 2 kHz Nyquist of 4 kHz
    out = resample(tone, sr, 4000)
    # A naive decimation would fold 3 kHz to 1 kHz at full amplitude.
    assert np.sqrt(np.mean(out[200:-200] ** 2)) < 0.01


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", r"empty file \(zero bytes\)"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "cannot decode"),
        (b"this is not audio at all, just text" * 10, "cannot decode"),
    ],
)
def test_broken_files(tmp_path, content, reason):
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=reason) as info:
        load_clip(path)
    assert info.value.path == str(path)


def test_zero_samples_silence_nan_and_missing(tmp_path):
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 4000)
    with pytest.raises(AudioError, match="zero samples"):
        load_clip(empty)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(4000, dtype=np.float32), 4000)
    with pytest.raises(AudioError, match="silent"):
        load_clip(silent)
    bad = np.ones(4000, dtype=np.float32)
    bad[10] = np.nan
    nan = write_wav(tmp_path / "nan.wav", bad, 4000, "FLOAT")
    with pytest.raises(AudioError, match="non-finite"):
        load_clip(nan)
    with pytest.raises(AudioError, match="missing file"):
        load_clip(tmp_path / "nope.wav")


def test_too_long_is_refused_before_decoding(tmp_path):
    path = tmp_path / "long.wav"
    with sf.SoundFile(str(path), "w", samplerate=4000, channels=1, subtype="PCM_16") as fh:
        fh.write(np.zeros(4000 * 5, dtype=np.float32) + 0.1)
    with pytest.raises(AudioError, match="too long"):
        load_clip(path, max_seconds=2)
