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


@pytest.mark.parametrize("sample_rate", [4000, 8000, 44100])
def test_highpass_design_and_filter_equal_scipys(rng, sample_rate):
    from scipy.signal import butter, sosfilt

    from hmmclf.data.crest import butterworth_highpass_sos, sos_filter

    reference = butter(4, 200.0, btype="highpass", fs=sample_rate, output="sos")
    sos = butterworth_highpass_sos(4, 200.0, sample_rate)
    np.testing.assert_allclose(sos, reference, rtol=1e-12, atol=1e-14)
    samples = rng.normal(size=3001).astype(np.float32)
    np.testing.assert_allclose(sos_filter(sos, samples), sosfilt(reference, samples), rtol=1e-10, atol=1e-12)


def test_crest_factor_is_peak_over_rms_of_each_highpassed_frame(rng):
    from scipy.signal import butter, sosfilt

    from hmmclf.data.crest import log_crest_factor
    from hmmclf.data.features import frame_signal

    samples = rng.normal(size=4017).astype(np.float32)
    samples[2000] = 40.0  # a click
    frames = frame_signal(sosfilt(butter(4, 200.0, btype="highpass", fs=4000, output="sos"), samples), 256, 80)
    expected = np.log(np.abs(frames).max(axis=1) / (np.sqrt((frames**2).mean(axis=1)) + 1e-9) + 1e-9)
    crest = log_crest_factor(samples, 4000, 256, 80)
    assert crest.shape == (1 + len(samples) // 80,)
    np.testing.assert_allclose(crest, expected, rtol=1e-10)
    assert crest.argmax() in (2000 // 80 - 1, 2000 // 80, 2000 // 80 + 1)


def test_dct_matrix_is_the_orthonormal_dct(rng):
    from scipy.fft import dct

    from hmmclf.data.features import dct_matrix

    values = rng.normal(size=(30, 50))
    np.testing.assert_allclose(dct_matrix(30, 13) @ values, dct(values, type=2, norm="ortho", axis=0)[:13], atol=1e-12)


def test_highpass_design_refuses_impossible_filters():
    from hmmclf.data.crest import butterworth_highpass_sos

    with pytest.raises(ValueError, match="order"):
        butterworth_highpass_sos(3, 200.0, 4000)
    with pytest.raises(ValueError, match="cutoff"):
        butterworth_highpass_sos(4, 2500.0, 4000)
