"""The clustering config: flags generated from ClusteringConfig, keyword overrides, calibrated thresholds."""

import pytest

from clustering.config import ClusteringConfig, effective
from clustering.dedup import HISTORICAL
from core import config as cfgsys
from core.config import ConfigError

# every flag python -m pipelines.build_clusters had before the config system
OLD_FLAGS = """--batch-size --calibration --caption-min-cos --centroids --cluster-size --copy-gate
--copy-max-colour-change --copy-max-residual --copy-min-cos --copy-threshold --cos-alone --cos-min-copy
--cos-threshold --cross-domain-group --cross-domain-spill --embedder --exact-fields --group-by --input --knn
--layout-neighbours --max-distance-ratio --min-similarity --mined --neighbours --niter --no-cross-domain
--output --per-shard --phash-min-copy --phash-min-cos --phash-threshold --reciprocal --runner --seed --seeds
--strict-coherence --target-group""".split()


def _parse(argv):
    from pipelines.build_clusters import ClustersCommand

    ap = cfgsys.parser_for("x", None)
    ap.add_argument("--input")
    ap.add_argument("--output")
    ap.add_argument("--mined")
    cfgsys.add_flags(ap, ClustersCommand)
    cfgsys.add_config_args(ap)
    return ap, cfgsys.parse(ap, ClustersCommand, argv, beam=True)


def test_every_old_flag_exists_and_parses_to_its_knob():
    ap, _ = _parse([])
    have = {s for a in ap._actions for s in a.option_strings}
    assert not set(OLD_FLAGS) - have
    _, (_, cmd, beam_args) = _parse(
        [
            "--cluster-size",
            "4",
            "--knn",
            "flat",
            "--no-cross-domain",
            "--exact-fields",
            "sha256",
            "--centroids",
            "3",
            "--cos-threshold",
            "0.9",
            "--runner",
            "direct-mp",
            "--project",
            "p",
        ]
    )
    c = cmd.clustering
    assert (c.cluster.size, c.cluster.knn_method, c.cross_domain.enabled, c.exact_fields) == (
        4,
        "flat",
        False,
        ("sha256",),
    )
    assert (c.kmeans.centroids, c.cluster.dedup.cos_threshold, cmd.runner.runner, beam_args) == (
        3,
        0.9,
        "direct-mp",
        ["--project", "p"],
    )
    with pytest.raises(ConfigError, match="cos-threshold"):
        _parse(["--cos-treshold", "0.9"])


def test_run_keywords_and_calibrated_thresholds():
    from pipelines.build_clusters import make_config

    cfg = make_config(neighbours=7, cluster_size=4, cross_domain=False, knn_method="flat", exact_fields="url",
                      per_shard=8, calibration="none")
    assert (cfg.cluster.neighbours, cfg.cluster.size, cfg.cross_domain.enabled) == (7, 4, False)
    assert (cfg.cluster.knn_method, cfg.exact_fields, cfg.shards.per_shard) == ("flat", ("url",), 8)
    eff, cal = effective(cfg)
    assert cal is None and eff.cross_domain.neighbours == 7  # the cross-domain pass follows --neighbours
    assert {k: getattr(eff.cluster.dedup, k) for k in HISTORICAL} == HISTORICAL
    assert (eff.cluster.member_floor, eff.cluster.unrelated_median) == (-1.0, 0.0)
    eff, cal = effective(
        make_config(cos_alone=0.99, copy_threshold=1.5)
    )  # the shipped calibration, one override
    assert cal is not None and eff.cluster.dedup.cos_alone == 0.99 and not eff.cluster.dedup.use_copy
    assert (
        eff.cluster.dedup.cos_threshold == cal.cos_threshold and eff.cluster.member_floor == cal.member_floor
    )
    assert effective(eff)[0] == eff  # resolving twice changes nothing
    with pytest.raises(ConfigError, match="closest|did you mean"):
        make_config(neighbors=3)


def test_cli_needs_input_or_mined(tmp_path):
    from pipelines.build_clusters import main

    with pytest.raises(Exception, match="--input .* or --mined"):
        main(["--output", str(tmp_path / "o")])
    assert cfgsys.to_dict(ClusteringConfig())["cluster"]["dedup"]["cos_threshold"] is None
