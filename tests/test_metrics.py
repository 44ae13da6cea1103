"""Known answers of the metrics on synthetic models whose output depends on a known region of the input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from teaching import metrics
from teaching.cams import compute_cams
from teaching.cams.maps import upsample

S = 32  # side of the synthetic images


def checker(side: int = S) -> torch.Tensor:
    """A +1/-1 checkerboard image (1, 3, side, side): its blur is near 0, its black (0) baseline is 0."""
    idx = torch.arange(side)
    board = ((idx[:, None] + idx[None, :]) % 2 * 2 - 1).float()
    return board.expand(1, 3, side, side).clone()


def region(y0: int, y1: int, x0: int, x1: int, side: int = S) -> torch.Tensor:
    """(1, side, side) mask, 1 inside rows y0:y1, cols x0:x1."""
    m = torch.zeros(1, side, side)
    m[:, y0:y1, x0:x1] = 1
    return m


class RegionModel(nn.Module):
    """Class 0's logit is `scale` x the checkerboard's contrast inside regions; 9 other classes stay at 0.

    With several regions and class weights, class c's logit is scale x sum_r W[c, r] x (checker evidence in r).
    """

    def __init__(self, regions: list[torch.Tensor], weights: list[list[float]] | None = None, scale: float = 8.0):
        super().__init__()
        board = checker()[0, 0]
        self.register_buffer("filters", torch.stack([r[0] * board / r.sum() for r in regions]))  # (R, S, S)
        w = torch.zeros(10, len(regions))
        w[0] = 1.0
        if weights is not None:
            w[: len(weights)] = torch.tensor(weights)
        self.register_buffer("w", w)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        evidence = torch.einsum("bhw,rhw->br", x.mean(1), self.filters)  # (B, R)
        return self.scale * evidence @ self.w.T  # (B, 10)


BLACK = torch.zeros(1, 3, S, S)
CLS0 = torch.tensor([0])


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- ranks and baselines --------------------------------------------------------------------------------------------


def test_pixel_ranks_follow_the_map_and_break_ties_with_the_seed():
    m = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])
    assert metrics.pixel_ranks(m, gen()).tolist() == [[3, 0, 1, 2]]
    flat = torch.zeros(1, 8, 8)
    a, b = metrics.pixel_ranks(flat, gen(1)), metrics.pixel_ranks(flat, gen(1))
    assert torch.equal(a, b) and sorted(a[0].tolist()) == list(range(64))
    assert not torch.equal(a, metrics.pixel_ranks(flat, gen(2)))


def test_constant_map_ranks_pixels_in_random_blobs():
    # the first quarter of the pixels of a constant map lie in few connected blobs, not scattered
    def edges(ranks: torch.Tensor) -> int:
        top = ranks.view(56, 56) < 56 * 56 // 4
        return int((top[1:] != top[:-1]).sum() + (top[:, 1:] != top[:, :-1]).sum())

    blobs = edges(metrics.pixel_ranks(torch.zeros(1, 56, 56), gen(3)))
    scattered = edges(torch.randperm(56 * 56, generator=gen(3)))
    assert blobs < 0.4 * 784 < 1.2 * 784 < scattered


def test_blend_is_exact_at_the_ends():
    x, base = torch.randn(1, 3, 4, 4), torch.full((1, 3, 4, 4), -1.234)
    assert torch.equal(metrics.blend(x, base, torch.ones(1, 4, 4)), x)
    assert torch.equal(metrics.blend(x, base, torch.zeros(1, 4, 4)), base)


def test_black_like_is_zero_pixels_in_normalised_space():
    black = metrics.black_like(torch.zeros(2, 3, 2, 2), (0.5, 0.5, 0.5), (0.5, 0.25, 0.5))
    assert black[0, :, 0, 0].tolist() == [-1.0, -2.0, -1.0]


def test_top_mask_keeps_the_fraction():
    m = torch.arange(100.0).view(1, 10, 10)
    mask = metrics.top_mask(m, 0.2, gen())
    assert mask.sum() == 20 and mask[0, 8:].sum() == 20


# --- Average Drop and Increase --------------------------------------------------------------------------------------


def test_average_drop_of_an_all_ones_map_is_zero():
    model = RegionModel([region(8, 16, 8, 16)])
    drop, increase = metrics.average_drop(model, checker(), torch.ones(1, S, S), CLS0, BLACK)
    assert drop.item() == 0.0 and not increase.item()


def test_average_drop_known_values():
    model = RegionModel([region(8, 16, 8, 16)])
    x = checker()
    y = torch.softmax(model(x), 1)[0, 0]
    inside, _ = metrics.average_drop(model, x, region(8, 16, 8, 16), CLS0, BLACK)
    outside, _ = metrics.average_drop(model, x, 1 - region(8, 16, 8, 16), CLS0, BLACK)
    half, _ = metrics.average_drop(model, x, torch.full((1, S, S), 0.5), CLS0, BLACK)
    assert inside.item() == pytest.approx(0.0, abs=1e-4)  # keeps all the evidence
    assert outside.item() == pytest.approx((y - 0.1).item() / y.item() * 100, rel=1e-4)  # logits all 0: p = 0.1
    p_half = torch.softmax(torch.tensor([4.0] + [0.0] * 9), 0)[0]
    assert half.item() == pytest.approx(((y - p_half) / y * 100).item(), rel=1e-4)


def test_increase_in_confidence_when_the_map_removes_contrary_evidence():
    # class 0 gains from region A and loses from region B: a map on A alone raises its probability
    model = RegionModel([region(0, 8, 0, 8), region(16, 24, 16, 24)], weights=[[1.0, -0.5]])
    drop, increase = metrics.average_drop(model, checker(), region(0, 8, 0, 8), CLS0, BLACK)
    assert increase.item() and drop.item() == 0.0


# --- deletion and insertion -----------------------------------------------------------------------------------------


def test_auc_of_known_curves():
    curves = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.5, 0.0], [0.0, 0.0, 1.0]])
    assert metrics.auc(curves).tolist() == [1.0, 0.5, 0.25]


def test_deletion_curve_endpoints():
    model = RegionModel([region(8, 16, 8, 16)])
    curve = metrics.perturbation_curve(model, checker(), BLACK, region(8, 16, 8, 16), CLS0, steps=16, generator=gen())
    assert curve.shape == (1, 17)
    assert curve[0, 0].item() == pytest.approx(torch.softmax(model(checker()), 1)[0, 0].item())
    assert curve[0, -1].item() == pytest.approx(0.1)  # all black: every logit 0
    # the region is 1/16 of the pixels: deleted after the first step of 16
    assert curve[0, 1].item() == pytest.approx(0.1)


def test_a_perfect_map_deletes_faster_and_inserts_faster_than_random_maps():
    model = RegionModel([region(4, 12, 20, 28)])
    x, perfect = checker(), region(4, 12, 20, 28)
    randoms = [torch.rand(1, S, S, generator=gen(s)) for s in range(5)]
    del_perfect = metrics.deletion(model, x, perfect, CLS0, BLACK, steps=16, generator=gen()).item()
    del_random = [metrics.deletion(model, x, r, CLS0, BLACK, steps=16, generator=gen()).item() for r in randoms]
    ins_perfect = metrics.insertion(model, x, perfect, CLS0, steps=16, generator=gen()).item()
    ins_random = [metrics.insertion(model, x, r, CLS0, steps=16, generator=gen()).item() for r in randoms]
    p0 = torch.softmax(model(x), 1)[0, 0].item()
    assert del_perfect == pytest.approx((p0 / 2 + 15 * 0.1 + 0.05) / 16)  # 0.1 from the first step on
    assert del_perfect < 0.13 < 0.6 < min(del_random)
    assert ins_perfect > 0.95 > 0.8 > max(ins_random)
    # the worst map (the region last) is worse than random
    worst = metrics.deletion(model, x, 1 - perfect, CLS0, BLACK, steps=16, generator=gen()).item()
    assert worst > max(del_random)


def test_a_constant_map_deletes_in_the_seeded_random_order():
    model = RegionModel([region(4, 12, 20, 28)])
    x = checker()
    constant = metrics.deletion(model, x, torch.zeros(1, S, S), CLS0, BLACK, steps=16, generator=gen(7))
    # the same order as a map equal to the seeded random field itself
    field = metrics.random_field((1, S, S), generator=gen(7))
    explicit = metrics.deletion(model, x, field, CLS0, BLACK, steps=16, generator=gen(99))
    assert constant.item() == pytest.approx(explicit.item())
    assert constant.item() != pytest.approx(
        metrics.deletion(model, x, torch.zeros(1, S, S), CLS0, BLACK, steps=16, generator=gen(8)).item()
    )


def test_deletion_is_batched_per_image():
    model = RegionModel([region(4, 12, 20, 28)])
    x = torch.cat([checker(), checker()])
    maps = torch.cat([region(4, 12, 20, 28), 1 - region(4, 12, 20, 28)])
    both = metrics.deletion(model, x, maps, torch.tensor([0, 0]), BLACK.expand(2, -1, -1, -1), steps=8, batch_size=5)
    one = metrics.deletion(model, x[:1], maps[:1], CLS0, BLACK, steps=8)
    assert both[0].item() == pytest.approx(one.item()) and both[1] > both[0]


# --- pointing game --------------------------------------------------------------------------------------------------


def test_pointing_game_hits_misses_and_tolerance():
    box = [torch.tensor([[10.0, 10.0, 20.0, 20.0]])]
    assert metrics.pointing_game(region(10, 20, 10, 20), box, 0.0).tolist() == [True]
    peak_outside = torch.zeros(1, S, S)
    peak_outside[0, 15, 29] = 1  # pixel centre (29.5, 15.5): 9.5 px right of the box
    assert metrics.pointing_game(peak_outside, box, 5.0).tolist() == [False]
    assert metrics.pointing_game(peak_outside, box, 10.0).tolist() == [True]
    far = torch.zeros(1, S, S)
    far[0, 0, 0] = 1
    assert metrics.pointing_game(far, box, 10.0).tolist() == [False]  # distance hypot(9.5, 9.5) = 13.4
    assert metrics.pointing_game(far, box, 14.0).tolist() == [True]


def test_pointing_tolerance_scales_with_the_crop():
    assert metrics.pointing_tolerance(224) == 15.0
    assert metrics.pointing_tolerance(448) == 30.0


def test_boxes_are_mapped_into_the_crop_frame():
    boxes = torch.tensor([[116.0, 16.0, 228.0, 128.0]])
    # the model sees the image's part (100, 0)-(548, 448) scaled to 224 px
    assert metrics.boxes_to_crop(boxes, (100, 0, 548, 448), 224).tolist() == [[8.0, 8.0, 64.0, 64.0]]


def test_a_constant_map_points_at_random():
    maps = torch.zeros(400, 20, 20)
    left_half = [torch.tensor([[0.0, 0.0, 10.0, 20.0]])] * 400
    hits = metrics.pointing_game(maps, left_half, 0.0, gen()).float().mean().item()
    assert 0.42 < hits < 0.58


# --- contrastive faithfulness ---------------------------------------------------------------------------------------


def test_contrastive_faithfulness_separates_shared_from_distinct_evidence():
    # region 1 (16% of the pixels) is evidence for A only; region 2 for A and B alike: margin y_A - y_B = region 1
    r1, r2 = region(0, 8, 0, 16), region(16, 32, 0, 32)
    model = RegionModel([r1, r2], weights=[[1.0, 1.0], [0.0, 1.0]])
    contrast_map = r1 + 0.1 * torch.rand(1, S, S, generator=gen())  # A rather than B: region 1
    plain_map = 0.5 * r1 + r2  # the plain map of A: shared region 2 strongest
    d = metrics.contrastive_faithfulness(
        model, checker(), contrast_map, plain_map, torch.tensor([0]), torch.tensor([1]), BLACK, seed=0
    )
    assert d["contrast"].item() == pytest.approx(8.0, abs=1e-4)  # the whole margin (scale 8) is deleted
    assert d["plain"].item() == pytest.approx(0.0, abs=1e-4)  # deleting region 2 leaves the margin
    assert 0 < d["random"].item() < 4.0
    assert d["contrast"].item() / d["random"].item() > 2


def test_contrastive_faithfulness_of_a_constant_map_equals_random():
    r1, r2 = region(0, 8, 0, 16), region(16, 32, 0, 32)
    model = RegionModel([r1, r2], weights=[[1.0, 1.0], [0.0, 1.0]])
    d = metrics.contrastive_faithfulness(
        model, checker(), torch.zeros(1, S, S), r2, torch.tensor([0]), torch.tensor([1]), BLACK, seed=5
    )
    assert d["contrast"].item() == d["random"].item()


# --- class discrimination -------------------------------------------------------------------------------------------


def test_class_discrimination_known_values():
    a = torch.rand(S, S, generator=gen())
    same = torch.stack([a, a, a]).unsqueeze(0)
    opposite = torch.stack([a, 1 - a]).unsqueeze(0)
    with_blank = torch.stack([a, 1 - a, torch.zeros(S, S)]).unsqueeze(0)
    blank = torch.zeros(1, 2, S, S)
    out = metrics.class_discrimination(torch.cat([same[:, :2], opposite, with_blank[:, [0, 2]], blank]))
    assert out[0].item() == pytest.approx(1.0)
    assert out[1].item() == pytest.approx(-1.0)
    assert math.isnan(out[2].item()) and math.isnan(out[3].item())  # fewer than two non-constant maps
    assert metrics.class_discrimination(with_blank).item() == pytest.approx(-1.0)  # the blank pair left out


# --- sanity check ---------------------------------------------------------------------------------------------------


def test_rankdata_and_spearman():
    assert metrics.rankdata(torch.tensor([3.0, 1.0, 2.0, 2.0])).tolist() == [4.0, 1.0, 2.5, 2.5]
    a = torch.rand(2, 50, generator=gen())
    assert metrics.spearman(a, a**3).tolist() == pytest.approx([1.0, 1.0])
    assert metrics.spearman(a, -a).tolist() == pytest.approx([-1.0, -1.0])
    assert math.isnan(metrics.spearman(a[:1], torch.zeros(1, 50)).item())


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1, stride=2), nn.ReLU()
        )
        self.head = nn.Conv2d(16, 16, 1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.head(self.features(x)))).flatten(1))


def test_cascade_units_and_randomise_leave_the_original_alone():
    torch.manual_seed(0)
    model = TinyNet().eval()
    assert metrics.cascade_units(model) == ["fc", "head", "features.2", "features.0"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    levels = metrics.cascading_randomisation(model, 2, seed=0)
    assert [units for units, _ in levels] == [("fc",), ("fc", "head")]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    first, second = levels[0][1], levels[1][1]
    assert not torch.equal(first.fc.weight, model.fc.weight) and torch.equal(first.head.weight, model.head.weight)
    assert torch.equal(second.fc.weight, first.fc.weight) and not torch.equal(second.head.weight, model.head.weight)


def test_sanity_check_edge_detector_keeps_one_and_gradcam_changes():
    torch.manual_seed(0)
    model = TinyNet().eval()
    x = torch.randn(2, 3, 16, 16, generator=gen(1))
    randomised = [m for _, m in metrics.cascading_randomisation(model, 3, seed=0)]

    def edges(_model: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        gray = inp.mean(1)
        return (gray[:, 1:, :-1] - gray[:, :-1, :-1]).abs() + (gray[:, :-1, 1:] - gray[:, :-1, :-1]).abs()

    def gradcam(mdl: nn.Module, inp: torch.Tensor) -> torch.Tensor:
        out = compute_cams(mdl, inp, [0], "gradcam", "head")
        return upsample(out.raw, (16, 16))[:, 0]

    assert metrics.sanity_check(edges, model, x, randomised).tolist() == [[1.0, 1.0]] * 3
    corr = metrics.sanity_check(gradcam, model, x, randomised)
    assert corr.shape == (3, 2)
    assert corr[-1].abs().max().item() < 0.5
