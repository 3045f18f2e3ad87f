"""``tmac info [MODEL]``: the CPU features Numba compiles for and the kernel path each op runs;
with a model (a GGUF path or a fetched name), its configuration and tensor types."""


def add_parser(subparsers):
    p = subparsers.add_parser("info", help="CPU features, available ISA paths and the path per op; "
                                           "with MODEL, its tensor types, counts and bytes")
    p.add_argument("model", nargs="?", default=None,
                   help="a GGUF file or a fetched model name (e.g. smollm2)")
    p.add_argument("--isa", default=None, help="show the choice as if this path were requested")
    p.set_defaults(run=run)


def model_report(model):
    """A ``tmac.display.Report`` of a GGUF file's tensor types: count, parameters, bytes, the
    bits per weight, and whether tmac runs the type natively. Parses the header only."""
    from collections import defaultdict

    from tmac.display import Report
    from tmac.model import fetch, loader

    from tmac.model import modelfile

    path = fetch.resolve(model)
    if modelfile.is_model_file(path):
        return saved_model_report(path)
    loader.check_header(path)
    gguf = loader._require_gguf()
    try:
        reader = gguf.GGUFReader(str(path))
    except loader._PARSE_ERRORS as error:
        raise loader.CorruptModelError(f"{path} is damaged or truncated: {error}") from None
    meta = loader.read_metadata(reader)
    by_type = defaultdict(lambda: [0, 0, 0])
    for t in reader.tensors:
        entry = by_type[t.tensor_type.name]
        entry[0] += 1
        entry[1] += int(t.n_elements)
        entry[2] += int(t.n_bytes)
    rows = [{"type": kind, "tensors": n, "weights": f"{w / 1e6:.1f} M", "mb": b / 1e6,
             "bits": 8 * b / w if w else 0.0,
             "runs": "native" if kind in loader.SUPPORTED_TYPES else "not supported"}
            for kind, (n, w, b) in sorted(by_type.items(), key=lambda kv: -kv[1][2])]
    title = (f"{path.name}: {meta.get('general.architecture')} "
             f"({meta.get('general.name', '?')}), {len(reader.tensors)} tensors, "
             f"{sum(r['mb'] for r in rows):.1f} MB")
    columns = [("type", "type", "{}"), ("tensors", "tensors", "{}"), ("weights", "weights", "{}"),
               ("mb", "MB", "{:.1f}"), ("bits", "bits/weight", "{:.3f}"), ("runs", "tmac", "{}")]
    return Report(title, columns, rows)


def saved_model_report(path):
    """A ``Report`` of a file saved by ``tmac quantize``: its matrices by scheme, width and
    group size, with their packed bytes."""
    from collections import defaultdict

    from tmac.display import Report
    from tmac.model import modelfile

    _, model = modelfile.load(path)
    by_kind = defaultdict(lambda: [0, 0, 0])
    for qw in model.matrices():
        entry = by_kind[(qw.scheme, qw.bits, qw.group_size)]
        entry[0] += 1
        entry[1] += qw.shape[0] * qw.shape[1]
        entry[2] += qw.nbytes
    rows = [{"type": f"{scheme} {bits}-bit g{group}", "tensors": n, "weights": f"{w / 1e6:.1f} M",
             "mb": b / 1e6, "bits": 8 * b / w, "runs": "lookup kernels"}
            for (scheme, bits, group), (n, w, b) in sorted(by_kind.items(),
                                                           key=lambda kv: -kv[1][2])]
    title = (f"{path.name}: saved by tmac quantize, {model.format.label}, "
             f"{len(model.matrices())} matrices, {sum(r['mb'] for r in rows):.1f} MB")
    columns = [("type", "type", "{}"), ("tensors", "matrices", "{}"), ("weights", "weights", "{}"),
               ("mb", "MB", "{:.1f}"), ("bits", "bits/weight", "{:.3f}"), ("runs", "tmac", "{}")]
    return Report(title, columns, rows)


def run(args):
    from rich.console import Console
    from rich.table import Table

    import tmac
    from tmac.kernels import dispatch

    info = dispatch.info(args.isa)
    console = Console()
    console.print(f"tmac {tmac.__version__} on CPU [bold]{info['cpu']}[/bold]; "
                  f"ISA paths available: {', '.join(info['available'])}"
                  + (f"; requested: {info['requested']}" if info["requested"] else ""))
    features = Table(title="CPU features (as Numba compiles for them)")
    features.add_column("feature")
    features.add_column("present")
    for name, present in info["features"].items():
        features.add_row(name, "yes" if present else "no")
    console.print(features)
    ops = Table(title="kernel path per op")
    ops.add_column("op")
    ops.add_column("path")
    ops.add_column("why")
    for op, path in info["ops"].items():
        ops.add_row(op, path, info["why"][op])
    console.print(ops)
    console.print(info["note"])
    if args.model:
        console.print(model_report(args.model))
    return 0
