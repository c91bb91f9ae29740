"""Rate control: predictions from the measured table, the choice, one-line errors."""

import math

import pytest
import trimesh

from necgs.errors import ConfigError
from necgs.io.mesh import Mesh
from necgs.io.ply import binary_ply_bytes
from necgs.model.decoder import Decoder
from necgs.settings import preset
from necgs.target_rate import RATE_TABLE, RatePoint, plan_rate, predict_bytes, replan

TABLE = (
    RatePoint("small", 6, 0.0, 4.9, 330.0, 9.0e-3),
    RatePoint("small", 6, 0.05, 2.5, 200.0, 9.1e-3),
    RatePoint("tiny", 6, 0.05, 2.4, 200.0, 10.5e-3),
    RatePoint("medium", 6, 0.05, 2.5, 200.0, 8.7e-3),
)


def meshes(n):
    out = []
    for i in range(n):
        t = trimesh.creation.icosphere(subdivisions=4)
        out.append(Mesh(t.vertices * (1 + i), t.faces, f"set/sphere_{i:03d}"))
    return out


def test_prediction_adds_exact_parameter_and_shape_counts():
    cfg, m = preset("quick"), meshes(10)
    p = TABLE[1]
    params = Decoder(preset("quick", width="small").decoder()).param_count()
    predicted = predict_bytes(cfg, p, m)
    body = params * p.weight_bits_per_param / 8 + 10 * p.feature_bytes_per_shape
    assert body < predicted < body + 2000


def test_plan_picks_the_best_cd_that_fits_and_meets_the_ratio():
    cfg, m = preset("quick", epochs=7), meshes(30)
    ply = sum(binary_ply_bytes(x) for x in m)
    roomy = plan_rate(cfg, m, target_bytes=10**7, table=TABLE)
    assert roomy.point.width == "medium" and roomy.config.train.lambda_rate == 0.05 and roomy.config.train.epochs == 7
    tight = predict_bytes(cfg, TABLE[2], m) + 10
    plan = plan_rate(cfg, m, target_ratio=ply / tight, table=TABLE)
    assert plan.point.width == "tiny" and plan.predicted_bytes <= plan.target_bytes
    assert "ratio" in plan.describe()


def test_plan_lands_near_the_target_before_chasing_a_lower_cd():
    """A much smaller point with a lower measured CD does not win over one that lands within 10%."""
    cfg, m = preset("quick"), meshes(16)
    near, small = RatePoint("small", 6, 0.0, 4.7, 330.0, 9.5e-3), RatePoint("tiny", 4, 0.0, 3.0, 190.0, 9.0e-3)
    target = int(predict_bytes(cfg, near, m) / 0.95)
    assert predict_bytes(cfg, small, m) < 0.9 * target
    assert plan_rate(cfg, m, target_bytes=target, table=(near, small)).point == near
    far = int(predict_bytes(cfg, near, m) / 0.5)  # nothing lands within 10%: the best CD that fits
    assert plan_rate(cfg, m, target_bytes=far, table=(near, small)).point == small


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({}, "exactly one"),
        ({"target_ratio": 2.0, "target_bytes": 5}, "exactly one"),
        ({"target_ratio": -1.0}, "positive"),
        ({"target_bytes": 100}, "out of reach"),
    ],
)
def test_impossible_or_malformed_targets_are_config_errors(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        plan_rate(preset("quick"), meshes(3), table=TABLE, **kwargs)


def test_the_committed_table_is_usable():
    assert RATE_TABLE and all(p.weight_bits_per_param > 0 and p.cd > 0 for p in RATE_TABLE)
    plan = plan_rate(preset("quick"), meshes(16), target_bytes=10**9)
    assert plan.predicted_bytes < 10**9


def test_a_point_with_its_own_feature_bits_sets_both_bit_depths():
    point = RatePoint(10, 5, 0.0, 3.8, 200.0, 7.6e-3, feature_bits=4)
    plan = plan_rate(preset("quick"), meshes(4), target_bytes=10**9, table=(point,))
    assert (plan.config.train.weight_bits, plan.config.train.feature_bits) == (5, 4)
    assert "features 4" in plan.describe()
    same = plan_rate(preset("quick"), meshes(4), target_bytes=10**9, table=(RatePoint(10, 5, 0.0, 3.8, 260.0, 7.6e-3),))
    assert same.config.train.feature_bits == 5


def test_a_tied_point_ties_the_decoder_whatever_the_base_and_predicts_its_fewer_weights():
    tied, untied = RatePoint(12, 6, 0.0, 4.0, 200.0, 7.0e-3, tied_modules=4), RatePoint(12, 6, 0.0, 4.0, 200.0, 7.0e-3)
    m = meshes(4)
    for base in (preset("quick"), preset("quick", tied_modules=2)):
        plan = plan_rate(base, m, target_bytes=10**9, table=(tied,))
        assert plan.config.tied_modules == 4 and "tied: 4" in plan.describe()
        assert plan_rate(base, m, target_bytes=10**9, table=(untied,)).config.tied_modules == 0
    cfg = preset("quick")
    saved = _weights_bytes(cfg, untied, m) - _weights_bytes(cfg, tied, m)
    assert saved > 0.5 * _weights_bytes(cfg, tied, m)  # three of four module copies are gone


def test_a_ratio_lands_near_the_target_on_either_side():
    cfg, m = preset("quick"), meshes(16)
    ply = sum(binary_ply_bytes(x) for x in m)
    small, big = RatePoint("tiny", 5, 0.0, 3.7, 250.0, 7.7e-3), RatePoint(10, 4, 0.0, 2.8, 200.0, 7.9e-3)
    b_small, b_big = predict_bytes(cfg, small, m), predict_bytes(cfg, big, m)
    assert b_small < 0.95 * b_big
    slightly_under_big = int(b_big / 1.03)  # big is predicted 3% over: within the window, and the only one
    plan = plan_rate(cfg, m, target_ratio=ply / slightly_under_big, table=(small, big))
    assert plan.point == big and plan.predicted_bytes > plan.target_bytes
    between = int((b_small * b_big) ** 0.5 * 1.01)  # none within 5%: the nearest in log size
    nearest = min((small, big), key=lambda p: abs(math.log(predict_bytes(cfg, p, m) / between)))
    assert plan_rate(cfg, m, target_ratio=ply / between, table=(small, big)).point == nearest
    with pytest.raises(ConfigError, match=r"ratio 1e\+06 is out of reach"):
        plan_rate(cfg, m, target_ratio=1e6, table=(small, big))


AMA_LIKE = (
    RatePoint("tiny", 5, 0.0, 3.746, 251.4, 7.693e-03),
    RatePoint(10, 4, 0.0, 2.788, 200.0, 7.901e-03),
    RatePoint("tiny", 6, 0.0, 4.790, 337.0, 7.704e-03),
)


def _weights_bytes(cfg, point, m):
    return predict_bytes(cfg, point, m) - predict_bytes(cfg, point, m, weight_scale=0.0)


def test_a_missed_ratio_gets_a_second_setting_scaled_by_the_measured_weights():
    """8 AMA bodies: width 10 at 4 bits wrote 13% fewer weight bytes than its table row, so ratio 90 gave 99.9."""
    cfg, m = preset("quick"), meshes(8)
    ply = sum(binary_ply_bytes(x) for x in m)
    first_point = AMA_LIKE[1]
    target = int(predict_bytes(cfg, first_point, m) / 1.018)
    plan = plan_rate(cfg, m, target_ratio=ply / target, table=AMA_LIKE)
    assert plan.point == first_point and plan.landed(plan.predicted_bytes)
    written = int(predict_bytes(cfg, first_point, m) - 0.13 * _weights_bytes(cfg, first_point, m))
    assert not plan.landed(written)  # the ratio reached is more than 10% above the one asked
    second = replan(plan, written, cfg, m, table=AMA_LIKE)
    assert second is not None and second.point != first_point
    assert second.weight_scale == pytest.approx(0.87, abs=0.01)
    assert second.predicted_bytes == predict_bytes(cfg, second.point, m, weight_scale=second.weight_scale)
    assert second.landed(second.predicted_bytes) and second.target_ratio == plan.target_ratio
    assert "as measured" in second.describe()


def test_no_second_setting_when_the_first_landed_or_nothing_is_nearer():
    cfg, m = preset("quick"), meshes(8)
    ply = sum(binary_ply_bytes(x) for x in m)
    plan = plan_rate(cfg, m, target_ratio=ply / predict_bytes(cfg, AMA_LIKE[1], m), table=AMA_LIKE)
    assert replan(plan, int(plan.predicted_bytes * 0.95), cfg, m, table=AMA_LIKE) is None  # landed
    alone = plan_rate(cfg, m, target_ratio=plan.target_ratio, table=AMA_LIKE[1:2])
    assert replan(alone, alone.predicted_bytes // 2, cfg, m, table=AMA_LIKE[1:2]) is None  # no other point


def test_a_size_over_its_ceiling_gets_a_second_setting_that_fits():
    cfg, m = preset("quick"), meshes(8)
    target = int(predict_bytes(cfg, AMA_LIKE[2], m) * 1.02)
    plan = plan_rate(cfg, m, target_bytes=target, table=AMA_LIKE)
    assert plan.point == AMA_LIKE[2]
    written = int(predict_bytes(cfg, AMA_LIKE[2], m) + 0.1 * _weights_bytes(cfg, AMA_LIKE[2], m))
    assert written > target and not plan.landed(written)
    second = replan(plan, written, cfg, m, table=AMA_LIKE)
    assert second is not None and second.predicted_bytes <= target and second.weight_scale > 1
    assert second.miss(second.predicted_bytes) < plan.miss(written)
