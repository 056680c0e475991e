import numpy as np
import pytest
from conftest import make_signal

from hmmclf.data.features import FeatureConfig, compute_features


def test_shapes_and_dtype(rng):
    config = FeatureConfig()
    feats = compute_features(make_signal("wheeze", 1.0, 4000, rng), config)
    assert feats.dtype == np.float32
    assert feats.shape == (1 + 4000 // config.hop_length, (config.n_mfcc + len(config.extra)) * 2)
    assert np.isfinite(feats).all()


def test_column_sets_name_the_cepstra_and_their_deltas(rng):
    config = FeatureConfig(n_mfcc=3, extra=("flatness", "crest"), deltas=2)
    sets = config.column_sets()
    # Layout per block: 3 cepstra, 2 extra; blocks: static, delta, delta-delta.
    assert sets["cepstra"] == (0, 1, 2, 5, 6, 7, 10, 11, 12)
    assert sets["all"] == tuple(range(15)) and config.n_features == 15
    assert compute_features(make_signal("wheeze", 1.0, 4000, rng), config).shape[1] == 15
    without = FeatureConfig(n_mfcc=3, extra=(), deltas=2)
    assert without.column_sets()["cepstra"] == without.column_sets()["all"] == tuple(range(9))


def test_cepstral_mean_normalisation_removes_the_mean(rng):
    config = FeatureConfig(cepstral_mean_norm=True, deltas=0)
    feats = compute_features(make_signal("normal", 1.0, 4000, rng), config)
    np.testing.assert_allclose(feats[:, list(config.column_sets()["cepstra"])].mean(axis=0), 0, atol=1e-4)


def test_deltas_two(rng):
    feats = compute_features(make_signal("normal", 1.0, 4000, rng), FeatureConfig(deltas=2, n_mfcc=10, extra=()))
    assert feats.shape[1] == 30


def test_too_short(rng):
    with pytest.raises(ValueError, match="too short"):
        compute_features(np.ones(100, dtype=np.float32), FeatureConfig())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fmax": 3000.0},
        {"n_mfcc": 50, "n_mels": 40},
        {"deltas": 3},
        {"delta_width": 4},
        {"hop_length": 512, "frame_length": 256},
        {"min_frames": 3},
        {"sample_rate": 500},
    ],
)
def test_invalid_configs(kwargs):
    with pytest.raises(ValueError, match="invalid feature config"):
        FeatureConfig(**kwargs)


def test_round_trip_and_fingerprint():
    config = FeatureConfig(n_mfcc=20, fmin=100.0)
    again = FeatureConfig.from_dict(config.to_dict())
    assert again == config and again.fingerprint() == config.fingerprint()
    assert FeatureConfig().fingerprint() != config.fingerprint()
    with pytest.raises(ValueError, match="unknown feature config keys"):
        FeatureConfig.from_dict({"n_mfcc": 13, "colour": "red"})


def test_mfcc_equal_librosa_reference(rng):
    import librosa

    config = FeatureConfig(deltas=0, cepstral_mean_norm=False, extra=())
    y = make_signal("crackle", 1.0, 4000, rng)
    reference = librosa.feature.mfcc(
        y=y,
        sr=4000,
        n_mfcc=config.n_mfcc,
        n_fft=config.frame_length,
        hop_length=config.hop_length,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
    ).T
    np.testing.assert_allclose(compute_features(y, config), reference, rtol=1e-4, atol=1e-3)


def test_delta_is_the_regression_slope():
    from hmmclf.data.features import delta

    ramp = np.arange(20, dtype=float)[None, :] * 3.0
    d = delta(ramp, 9)
    np.testing.assert_allclose(d[0, 4:-4], 3.0)  # exact slope away from the edges
    assert d.shape == ramp.shape


def test_mel_filterbank_equals_librosa():
    import librosa

    from hmmclf.data.features import mel_filterbank

    for sr, n_fft, n_mels, fmin, fmax in (
        (4000, 256, 30, 50.0, 1200.0),
        (8000, 512, 40, 0.0, 4000.0),
        (4000, 256, 26, 100.0, 1000.0),
    ):
        np.testing.assert_allclose(
            mel_filterbank(sr, n_fft, n_mels, fmin, fmax),
            librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax),
            rtol=1e-5,
            atol=1e-7,
        )


def test_spectrogram_equals_librosa_stft(rng):
    import librosa

    from hmmclf.data.features import power_spectrogram

    y = make_signal("wheeze", 0.7, 4000, rng)
    np.testing.assert_allclose(
        power_spectrogram(y, 256, 80), np.abs(librosa.stft(y, n_fft=256, hop_length=80)) ** 2, rtol=1e-4, atol=1e-6
    )
