import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy.stats import kurtosis

from hmmclf.data.synthetic import BROKEN_FILE, breath_noise, crackles, synthesize_corpus, wheeze


@pytest.fixture(scope="module")
def demo_corpus(tmp_path_factory):
    return synthesize_corpus(tmp_path_factory.mktemp("demo"), n_per_class=8, n_patients=4, seed=0)


def test_layout_counts_and_formats(demo_corpus):
    labels = pd.read_csv(demo_corpus / "train.csv")
    assert list(labels.columns) == ["filename", "patient_id", "label"]
    assert labels["label"].value_counts().to_dict() == {"normal": 9, "crackle": 8, "wheeze": 8, "both": 8}
    rates = set()
    for name in labels["filename"]:
        if name == BROKEN_FILE:
            with pytest.raises(sf.LibsndfileError):
                sf.info(str(demo_corpus / "train" / name))
            continue
        info = sf.info(str(demo_corpus / "train" / name))
        assert info.subtype == "PCM_16" and info.channels == 1
        assert 1.5 <= info.duration <= 4.0
        rates.add(info.samplerate)
    assert len(rates) >= 2
    # Every patient holds several classes, so grouped stratified folds are possible.
    assert (labels.groupby("patient_id")["label"].nunique() >= 3).all()


def test_deterministic(tmp_path, demo_corpus):
    again = synthesize_corpus(tmp_path / "again", n_per_class=8, n_patients=4, seed=0)
    other = synthesize_corpus(tmp_path / "other", n_per_class=8, n_patients=4, seed=1)
    name = "wheeze_003.wav"
    assert (again / "train" / name).read_bytes() == (demo_corpus / "train" / name).read_bytes()
    assert (other / "train" / name).read_bytes() != (demo_corpus / "train" / name).read_bytes()


def test_components_carry_their_acoustics():
    rng = np.random.default_rng(0)
    sr = 4000
    tone = wheeze(2.0, sr, rng)
    active = tone[np.abs(tone) > 0]
    assert len(active) >= 0.1 * sr  # at least 100 ms
    spectrum = np.abs(np.fft.rfft(tone))
    peak = np.fft.rfftfreq(len(tone), 1 / sr)[np.argmax(spectrum)]
    assert 80 <= peak <= 1200
    clicks = crackles(2.0, sr, rng)
    noise = breath_noise(2.0, sr, rng)
    assert kurtosis(clicks) > 10 * max(kurtosis(noise), 1.0)


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="n_per_class"):
        synthesize_corpus("unused", n_per_class=1)
    with pytest.raises(ValueError, match="duration_s"):
        wheeze(0, 4000, rng)
    with pytest.raises(ValueError, match="band"):
        breath_noise(1.0, 4000, rng, band=(500, 100))
