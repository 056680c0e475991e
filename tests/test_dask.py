"""The same extraction and CV through a Dask cluster (loopback LocalCluster) as locally."""

import numpy as np
import pytest

from hmmclf.data.extraction import extract_corpus
from hmmclf.evaluation.cv import cross_validate
from hmmclf.model.classifier import HMMClassifier
from hmmclf.utils.parallel import compute_backend

distributed = pytest.importorskip("distributed")


def test_extract_and_cv_through_a_local_cluster_match_local(corpus, tmp_path):
    local = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "local", n_jobs=1).features
    local_cv = cross_validate(local, HMMClassifier(n_states=2, n_iter=3), n_folds=2, seed=0, n_jobs=1, baselines=False)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, processes=True
    ) as cluster:
        with compute_backend(cluster.scheduler_address) as backend:
            assert backend.startswith("dask cluster")
            remote = extract_corpus(corpus / "train", corpus / "train.csv", tmp_path / "remote", chunk_size=4).features
            remote_cv = cross_validate(remote, HMMClassifier(n_states=2, n_iter=3), n_folds=2, seed=0, baselines=False)
    assert remote.files == local.files
    for a, b in zip(remote.sequences, local.sequences):
        np.testing.assert_array_equal(a, b)
    assert remote_cv.predictions["predicted"].tolist() == local_cv.predictions["predicted"].tolist()
    np.testing.assert_allclose(
        remote_cv.predictions.filter(like="log_likelihood").to_numpy(),
        local_cv.predictions.filter(like="log_likelihood").to_numpy(),
    )


def test_unreachable_scheduler_is_a_one_line_error():
    from hmmclf.utils.errors import HmmclfError

    with pytest.raises(HmmclfError, match="cannot reach Dask scheduler"):
        with compute_backend("tcp://127.0.0.1:1", connect_timeout="1s"):
            pass
