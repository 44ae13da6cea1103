"""The CAM engine: k class maps of a batch of images from one forward pass and one batched gradient.

    core.py        CamOutput, the frozen CamRequest, CamMethod (the method facts), hooks, batched_grad
    targets.py     class scores, the one contrast helper, the class-range check
    head.py        the closed form of a global-average-pool + linear head, and `head_for` (who gets the head)
    gradient.py    Grad-CAM, Grad-CAM++, XGrad-CAM, LayerCAM, the contrastive Grad-CAM, Finer-CAM
    activation.py  the closed-form CAM and Score-CAM;   occlusion.py, smooth.py, guided.py: one family each
    engine.py      METHODS (one plain dict), get_method, compute_cams
    maps.py        upsampling, min-max scaling, placing maps on the photo (after the engine)
    accel.py       FastCAM: channels_last, half precision and CUDA graphs around compute_cams

Imports point down this list (engine imports the families, accel imports the engine); nothing imports back.
Only torch, NumPy and `teaching.errors` are imported from outside.
"""

from teaching.cams.accel import FastCAM, accelerate
from teaching.cams.activation import ClosedFormCAM, ScoreCAM
from teaching.cams.core import (
    CamMethod,
    CamOutput,
    CamRequest,
    batched_grad,
    capture,
    eval_mode,
    find_layer,
    forward_with_activation,
)
from teaching.cams.engine import METHODS, class_table, compute_cams, get_method, guided_backprop
from teaching.cams.gradient import (
    ContrastiveCAM,
    FinerCAM,
    GradCAM,
    GradCAMpp,
    GradientCAM,
    LayerCAM,
    XGradCAM,
    gradcampp_weights,
    group_contrast,
    spatially_constant,
    weighted_sum,
)
from teaching.cams.guided import GuidedBackprop, GuidedGradCAM, GuidedSwitch, guided_relus
from teaching.cams.head import feeds_gap_linear, gap_linear_grads, head_for, head_rows, head_tolerance
from teaching.cams.maps import minmax, place_maps, row_scale, scaled, upsample
from teaching.cams.occlusion import Occlusion
from teaching.cams.smooth import SmoothGradCAMpp
from teaching.cams.targets import apply_contrast, check_classes, class_scores

__all__ = [
    "METHODS",
    "CamMethod",
    "CamOutput",
    "CamRequest",
    "ClosedFormCAM",
    "ContrastiveCAM",
    "FastCAM",
    "FinerCAM",
    "GradCAM",
    "GradCAMpp",
    "GradientCAM",
    "GuidedBackprop",
    "GuidedGradCAM",
    "GuidedSwitch",
    "LayerCAM",
    "Occlusion",
    "ScoreCAM",
    "SmoothGradCAMpp",
    "XGradCAM",
    "accelerate",
    "apply_contrast",
    "batched_grad",
    "capture",
    "check_classes",
    "class_scores",
    "class_table",
    "compute_cams",
    "eval_mode",
    "feeds_gap_linear",
    "find_layer",
    "forward_with_activation",
    "gap_linear_grads",
    "get_method",
    "gradcampp_weights",
    "group_contrast",
    "guided_backprop",
    "guided_relus",
    "head_for",
    "head_rows",
    "head_tolerance",
    "minmax",
    "place_maps",
    "row_scale",
    "scaled",
    "spatially_constant",
    "upsample",
    "weighted_sum",
]
