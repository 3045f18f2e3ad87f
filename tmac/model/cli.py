"""Shared command-line plumbing of ``tmac generate``, ``tmac perplexity`` and ``tmac bench model``."""
from __future__ import annotations

import sys

from tmac.model.formats import DEFAULT_HEAD, FORMATS, fit_choices
from tmac.priority import PRIORITIES


def add_model_arguments(p, formats=True):
    p.add_argument("--model", default="smollm2", help="a GGUF file or a fetched model name "
                                                     "(default smollm2; run `tmac fetch` first)")
    if formats:
        p.add_argument("--format", default="native", choices=FORMATS, metavar="FORMAT",
                       help="weight format (default native: every tensor in its file's own type); "
                            "w4: affine 4-bit groups (llama.cpp's Q4_1 form), f32: dequantized "
                            f"GGUF weights; one of {', '.join(FORMATS)}")
    add_fit_arguments(p)
    p.add_argument("--threads", type=int, default=None, help="Numba threads (default: all cores)")
    p.add_argument("--priority", default="normal", choices=PRIORITIES,
                   help="normal (default) or low: every thread of this run at the lowest "
                        "scheduling priority (Linux SCHED_IDLE), so the machine stays "
                        "responsive; results are the same (docs/performance.md)")
    p.add_argument("--matmul", default="lut", choices=("lut", "dequant"),
                   help="lut: tmac's table-lookup kernels (default); dequant: the baseline")
    p.add_argument("--lut", default="int8", choices=("int8", "float32"),
                   help="lookup tables: int8 (T-MAC's, default) or float32 (exact, slower)")
    p.add_argument("--no-cache", action="store_true",
                   help="requantize now instead of reusing the cached quantized weights")


def add_fit_arguments(p):
    """--group-size, --head, --sym, --fit, --calibration: how a requantized format is made."""
    p.add_argument("--group-size", type=int, default=None,
                   help="weights per scale (default 32; must divide 576 and 1536)")
    p.add_argument("--head", default=DEFAULT_HEAD, metavar="FORMAT",
                   help=f"the output head's format (default {DEFAULT_HEAD}; 'same': the body's)")
    p.add_argument("--sym", action="store_true", help="symmetric w1..w8 (zero fixed at 2^(b-1))")
    p.add_argument("--fit", default=None, choices=fit_choices(),
                   help="how requantized weights are fitted (w1..w8, and the head when its format "
                        "has the choice): lsq (default, least squares), minmax (round to nearest) "
                        "hqq (half-quadratic, lp error, no data) or gptq (w1..w8: layer by layer "
                        "on text the model samples itself, act-order, refits; docs/quality.md)")
    p.add_argument("--calibration", default=None, metavar="TEXT",
                   help="with --fit gptq (or tmac quantize --bpw): a UTF-8 text file to calibrate "
                        "on (default: sequences the model samples itself, cached)")


def say(message):
    print(message, file=sys.stderr, flush=True)


def open_model(args, fmt_name=None, quiet=False):
    """(OpenModel, ModelFormat) for parsed args, with a progress bar while quantizing."""
    from tmac.model import formats, loader, store
    from tmac.priority import set_priority

    loader.require_extra()                # a missing extra: one line, before anything else
    fmt = formats.parse(fmt_name or args.format, args.group_size, args.sym, head=args.head,
                        fit=getattr(args, "fit", None))
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    set_priority(getattr(args, "priority", "normal"))     # before quantizing: that is work too
    if not quiet:
        from tmac.model import fetch, modelfile

        saved = modelfile.is_model_file(fetch.resolve(args.model))
        say(f"loading {args.model} " + ("(saved by tmac quantize) ..." if saved
                                        else f"as {fmt.label} ..."))
    om = store.open_model(args.model, fmt, use_cache=not args.no_cache,
                           progress=progress_bar(f"quantizing to {fmt.name}", quiet),
                           calibration=_calibration(args, fmt))
    return om, om.model.format if om.saved else fmt


def _calibration(args, fmt):
    """Token ids of ``--calibration TEXT`` (None without it: the model samples its own)."""
    text_file = getattr(args, "calibration", None)
    if text_file is None:
        return None
    if fmt.fit != "gptq":
        raise ValueError("--calibration is only used by --fit gptq")
    from pathlib import Path

    from tmac.model import fetch, loader
    from tmac.model.calibration import from_text
    from tmac.model.tokenizer import GGUFTokenizer

    text = Path(text_file).read_text(encoding="utf-8")
    metadata = loader.load(fetch.resolve(args.model), native=True).metadata
    return from_text(GGUFTokenizer.from_metadata(metadata), text,
                     where=f"--calibration {text_file}")


def progress_bar(label, quiet=False):
    """A ``progress(done, total)`` callback drawing a transient bar on stderr (none when quiet)."""
    bar = None

    def progress(done, total):
        nonlocal bar
        if quiet:
            return
        if bar is None:
            from rich.progress import Progress

            bar = Progress(transient=True, console=_stderr_console())
            bar.start()
            bar.task = bar.add_task(label, total=total)
        bar.update(bar.task, completed=done)
        if done == total:
            bar.stop()

    return progress


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)
