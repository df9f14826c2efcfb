#!/usr/bin/env python3
"""Convert an ONNX YOLO detector to a .rknn model for the RK3588 NPU.

    python3 scripts/rknn-convert.py --onnx yolov8n.onnx --kind yolov8 \
        --out ~/.cache/vigil/models/yolov8n.rknn [--dataset calib.txt] [--no-quant] \
        [--classes 80] [--input-size 640x640] [--skip-layout-check]

Normally run through `make rknn-model ONNX=/path/model.onnx KIND=yolov8`, which
creates a Python venv with rknn-toolkit2 2.5.0 (and the torch<=2.4 it requires:
5.6 GB with PyPI's CUDA libraries) under $VIGIL_CACHE_DIR/rknn-venv and calls
this script with it. Conversion runs on x86-64 in seconds; no board is needed.

What it does (rknn-toolkit2, `from rknn.api import RKNN`):

    config(mean_values=[[0, 0, 0]], std_values=[[255, 255, 255]],
           target_platform='rk3588', quantized_dtype='w8a8')
    load_onnx(model)          (with inputs/input_size_list for --input-size)
    build(do_quantization=True, dataset=<text file, one calibration image per line>)
    export_rknn(out)

mean 0 / std 255 puts the normalisation x/255 into the model: vigil feeds the
NPU RGB u8 pixels (RGA's letterbox output, NHWC) and the runtime converts
them. 'w8a8' is toolkit2's name for the int8 asymmetric (affine) quantisation
older releases called 'asymmetric_quantized-8': int8 weights per channel,
int8 activations with one zero point and scale per tensor. --no-quant builds
a float16 model instead (slower on the NPU, no calibration images needed).

Calibration images (--dataset): a text file listing image paths, one per
line (relative paths are relative to the file). The default is a list made
from Debian darknet's /usr/share/darknet/data/*.jpg (or, after
`VIGIL_DARKNET=extract make deps`, $VIGIL_CACHE_DIR/darknet/data/*.jpg):
half a dozen street and animal pictures, enough to get ranges that work, not
to get the best accuracy. For a deployment, list a few hundred frames from
the cameras themselves.

ONNX models: exported as Rockchip's airockchip/rknn_model_zoo does it (its
forks of the ultralytics/yolov5, ultralytics and YOLOX repositories), with the
heads cut before the decode so every output is a raw NCHW feature map, batch
1, a fixed input [1, 3, H, W] (usually 640x640), heads at strides 8, 16, 32 in
that order. vigil's postprocessing (app/src/detect/yolo.rs) reads exactly
these layouts, C being the number of classes (80 for COCO):

  kind yolov5   3 outputs, one per head, [1, 3*(5+C), H/s, W/s]:
                for each of the head's 3 anchors the channels x, y, w, h,
                objectness, C class scores, sigmoided inside the model.
                Anchors: the COCO YOLOv5 anchors (10,13 16,30 33,23 /
                30,61 62,45 59,119 / 116,90 156,198 373,326).
  kind yolov8   9 outputs, three per head, heads in stride order:
                boxes [1, 64, H/s, W/s] (DFL logits, 16 bins x left, top,
                right, bottom), scores [1, C, H/s, W/s] (sigmoided),
                score_sum [1, 1, H/s, W/s] (sum of the class scores, used to
                skip empty cells); YOLO11 models from the zoo have the same
                layout. 6 outputs (no score_sum) are accepted too.
  kind yolox    3 outputs, one per head, [1, 5+C, H/s, W/s]: x, y, w, h
                (raw: centre offset in cells, log size in strides),
                objectness and C class scores sigmoided inside the model.

Before converting, the ONNX input and outputs are checked against the layout
of --kind and --classes (default 80, the COCO models vigil's labels name)
with the `onnx` package, which rknn-toolkit2 installs; --skip-layout-check
converts a model whose outputs do not match (vigil will not decode it).

Exit status 0 on success; 1 with a one-line `rknn-convert: error: ...` on
stderr for a missing input, a missing toolkit, a layout mismatch or a
toolkit failure.
"""

import argparse
import glob
import os
import sys
import tempfile

KINDS = ("yolov5", "yolov8", "yolox")
PLATFORM = "rk3588"


def log(msg):
    print(f"rknn-convert: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


def cache_dir():
    return os.environ.get("VIGIL_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "vigil"
    )


def default_images():
    """Darknet's sample JPEGs, from the package or from `VIGIL_DARKNET=extract`."""
    for d in ("/usr/share/darknet/data", os.path.join(cache_dir(), "darknet", "data")):
        images = sorted(glob.glob(os.path.join(d, "*.jpg")))
        if images:
            return d, images
    return None, []


def read_dataset(path):
    """The image paths a dataset file lists, resolved like the toolkit does."""
    base = os.path.dirname(os.path.abspath(path))
    images = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            # A line may hold several space-separated inputs; vigil's models have one.
            first = line.split()[0]
            images.append(first if os.path.isabs(first) else os.path.join(base, first))
    return images


def dims(value_info):
    """A tensor's shape as ints, None for a symbolic or unknown dimension."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def model_input(onnx_path):
    """The model's one input (the graph's inputs that are not weights)."""
    import onnx
    model = onnx.load(onnx_path, load_external_data=False)
    init_names = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init_names]
    if len(inputs) != 1:
        die(f"{onnx_path}: {len(inputs)} inputs; vigil feeds one picture")
    return model, inputs[0]


def check_layout(onnx_path, kind, want_classes, size):
    """Checks the model's input and outputs against what vigil decodes for `kind`
    with `want_classes` classes (0: any number); `size` (width, height) fixes
    symbolic input dimensions (--input-size).

    Returns a one-line description (input size, classes) or exits with an error.
    """
    try:
        import onnx
    except ImportError:
        log("warning: the onnx package is missing; output layout not checked")
        return None
    model, inp = model_input(onnx_path)
    outputs = list(model.graph.output)
    problems = []

    in_shape = dims(inp)
    if not in_shape or len(in_shape) != 4 or in_shape[0] not in (1, None) or in_shape[1] != 3:
        die(f"{onnx_path}: input {inp.name} has shape {in_shape}; expected [1, 3, H, W]")
    if size:
        in_w, in_h = size
        if (in_shape[2] or in_h, in_shape[3] or in_w) != (in_h, in_w):
            die(f"{onnx_path}: input {inp.name} is {in_shape}, not {in_w}x{in_h} (--input-size)")
    elif None in in_shape:
        die(f"{onnx_path}: input {inp.name} has symbolic dimensions {in_shape}: pass "
            "--input-size WxH (e.g. 640x640) or re-export with a fixed size and batch 1")
    else:
        _, _, in_h, in_w = in_shape
    shapes = [dims(o) for o in outputs]
    names = [o.name for o in outputs]

    def describe():
        return ", ".join(f"{n} {s}" for n, s in zip(names, shapes))

    def head_grid(shape, h, head):
        """Checks output h, a [1, ch, gh, gw] map of head `head` (stride 8 << head);
        returns ch or None."""
        # Symbolic batch and grid dimensions are what a dynamic-shape export
        # gives (then --input-size was given); the channels must be fixed.
        if not shape or len(shape) != 4 or shape[0] not in (1, None) or shape[1] is None \
                or (None in shape[2:] and not size):
            problems.append(f"output {h} shape {shape} is not a fixed [1, C, H, W]")
            return None
        stride = 8 << head
        if None not in shape[2:] and (shape[2], shape[3]) != (in_h // stride, in_w // stride):
            problems.append(
                f"output {h} grid {shape[2]}x{shape[3]} is not the stride-{stride} grid "
                f"{in_h // stride}x{in_w // stride} of a {in_h}x{in_w} input"
            )
        return shape[1]

    classes = None
    if kind in ("yolov5", "yolox"):
        if len(outputs) != 3:
            die(f"{onnx_path}: {len(outputs)} outputs ({describe()}); kind {kind} "
                "needs 3, one [1, ch, H, W] per head (the rknn_model_zoo export)")
        for h, s in enumerate(shapes):
            ch = head_grid(s, h, h)
            if ch is None:
                continue
            if kind == "yolov5":
                c = ch // 3 - 5 if ch % 3 == 0 else -1
                if c < 1:
                    problems.append(f"output {h} has {ch} channels, not 3*(5+C)")
            else:
                c = ch - 5
                if c < 1:
                    problems.append(f"output {h} has {ch} channels, not 5+C")
            if c >= 1:
                if classes is not None and c != classes:
                    problems.append(f"output {h} has {c} classes, output 0 {classes}")
                classes = classes or c
    else:
        if len(outputs) not in (6, 9):
            die(f"{onnx_path}: {len(outputs)} outputs ({describe()}); kind yolov8 needs 9 "
                "(boxes, scores, score_sum per head) or 6 (boxes, scores per head)")
        per = len(outputs) // 3
        for h, s in enumerate(shapes):
            ch = head_grid(s, h, h // per)
            if ch is None:
                continue
            role = ("boxes", "scores", "score_sum")[h % per]
            if role == "boxes" and (ch % 4 != 0 or not 1 <= ch // 4 <= 32):
                problems.append(f"output {h} (boxes) has {ch} channels, not 4 x DFL bins "
                                "(64 for the zoo's 16 bins)")
            elif role == "scores":
                if classes is not None and ch != classes:
                    problems.append(f"output {h} has {ch} classes, output 1 {classes}")
                classes = classes or ch
            elif role == "score_sum" and ch != 1:
                problems.append(f"output {h} (score_sum) has {ch} channels, not 1")
    if not problems and want_classes and classes != want_classes:
        # Also what tells a yolov5 head (3*(5+80) = 255 channels) from a
        # yolox head of 250 classes.
        problems.append(f"{classes} classes, not {want_classes} (--classes)")
    if problems:
        die(f"{onnx_path} does not have the {kind} layout vigil decodes: "
            + "; ".join(problems) + f" (outputs: {describe()})")
    return f"input {in_w}x{in_h}, {len(outputs)} outputs, {classes} classes"


def main():
    ap = argparse.ArgumentParser(
        description="Convert an ONNX YOLO detector (rknn_model_zoo export) to .rknn for rk3588.",
        epilog="The docstring at the top of this script describes the output layouts.",
    )
    ap.add_argument("--onnx", required=True, help="the ONNX model")
    ap.add_argument("--out", help="the .rknn to write (default: "
                    "$VIGIL_CACHE_DIR/models/<onnx basename>.rknn)")
    ap.add_argument("--kind", choices=KINDS, default="yolov8",
                    help="output layout to check for (default yolov8)")
    ap.add_argument("--classes", type=int, default=80, metavar="N",
                    help="number of classes the outputs must have (default 80, COCO; 0: any)")
    ap.add_argument("--dataset", help="text file listing calibration images, one per line "
                    "(default: darknet's sample JPEGs)")
    ap.add_argument("--input-size", metavar="WxH",
                    help="input size for an ONNX exported with symbolic (dynamic) input "
                    "dimensions, e.g. 640x640; batch is fixed at 1")
    ap.add_argument("--no-quant", action="store_true",
                    help="build a float16 model (no quantisation, no calibration images)")
    ap.add_argument("--skip-layout-check", action="store_true",
                    help="convert even if the outputs do not match --kind")
    ap.add_argument("--verbose", action="store_true", help="the toolkit's own log")
    args = ap.parse_args()

    size = None
    if args.input_size:
        try:
            w, h = (int(v) for v in args.input_size.lower().split("x"))
            if w < 32 or h < 32 or w % 32 or h % 32:
                raise ValueError
        except ValueError:
            die(f"--input-size {args.input_size}: expected WxH, multiples of 32 (e.g. 640x640)")
        size = (w, h)
    onnx_path = os.path.abspath(os.path.expanduser(args.onnx))
    if not os.path.isfile(onnx_path):
        die(f"ONNX model not found: {args.onnx}")
    out = args.out or os.path.join(
        cache_dir(), "models", os.path.splitext(os.path.basename(onnx_path))[0] + ".rknn"
    )
    out = os.path.abspath(os.path.expanduser(out))

    try:
        from rknn.api import RKNN
    except ImportError as e:
        die(f"rknn-toolkit2 is not installed for {sys.executable} ({e}); "
            "`make rknn-model ONNX=...` installs it in a venv under "
            "$VIGIL_CACHE_DIR/rknn-venv and runs this script with it")

    if args.skip_layout_check:
        log(f"layout check skipped (--skip-layout-check); vigil decodes only {', '.join(KINDS)}")
    else:
        summary = check_layout(onnx_path, args.kind, args.classes, size)
        if summary:
            log(f"{os.path.basename(onnx_path)}: {args.kind} layout, {summary}")

    tmp = None
    dataset = None
    if not args.no_quant:
        if args.dataset:
            dataset = os.path.abspath(os.path.expanduser(args.dataset))
            if not os.path.isfile(dataset):
                die(f"calibration list not found: {args.dataset}")
            images = read_dataset(dataset)
            if not images:
                die(f"{args.dataset} lists no images")
            missing = [p for p in images if not os.path.isfile(p)]
            if missing:
                die(f"{args.dataset}: {len(missing)} listed images missing, first {missing[0]}")
        else:
            src, images = default_images()
            if not images:
                die("no calibration images: pass --dataset LIST (a text file of image paths), "
                    "install darknet's samples (`make deps`, /usr/share/darknet/data/*.jpg), "
                    "or use --no-quant for a float16 model")
            tmp = tempfile.NamedTemporaryFile("w", prefix="rknn-dataset-", suffix=".txt",
                                              delete=False)
            tmp.write("".join(p + "\n" for p in images))
            tmp.close()
            dataset = tmp.name
            log(f"calibration: {len(images)} images from {src}")

    os.makedirs(os.path.dirname(out), exist_ok=True)
    rknn = RKNN(verbose=args.verbose)
    try:
        def step(what, ret):
            if ret != 0:
                die(f"{what} failed (returned {ret}); rerun with --verbose for the toolkit's log")

        step("config", rknn.config(
            mean_values=[[0, 0, 0]],
            std_values=[[255, 255, 255]],
            target_platform=PLATFORM,
            quantized_dtype="w8a8",
        ))
        if size:
            try:
                _, inp = model_input(onnx_path)
            except ImportError:
                die("--input-size needs the onnx package (rknn-toolkit2 installs it)")
            step(f"load_onnx({onnx_path})", rknn.load_onnx(
                model=onnx_path, inputs=[inp.name], input_size_list=[[1, 3, size[1], size[0]]]))
        else:
            step(f"load_onnx({onnx_path})", rknn.load_onnx(model=onnx_path))
        step("build", rknn.build(do_quantization=not args.no_quant, dataset=dataset))
        # Written beside the target and renamed: no half-written model on failure.
        part = out + ".part.rknn"
        step(f"export_rknn({part})", rknn.export_rknn(part))
        os.replace(part, out)
    finally:
        rknn.release()
        if tmp is not None:
            os.unlink(tmp.name)

    quant = "float16" if args.no_quant else "int8 (w8a8)"
    log(f"wrote {out} ({os.path.getsize(out)} bytes, {PLATFORM}, {quant})")
    print(out)


if __name__ == "__main__":
    main()
