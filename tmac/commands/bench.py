"""``tmac bench``: kernel speed against numpy fp32 and the dequant baseline (tmac.bench)."""


def add_parser(subparsers):
    from tmac import bench

    p = subparsers.add_parser("bench", help="LUT GEMV/GEMM speed vs numpy float32 and the dequant "
                                            "baseline, measured side by side (median after warm-up)")
    bench.add_arguments(p)
    p.set_defaults(run=run)
    from tmac.model import bench as model_bench     # `tmac bench model`: a real LLM's tokens/s
    from tmac.model import priority_bench           # `tmac bench priority`: what decode costs others

    modes = p.add_subparsers(dest="mode", metavar="{model,priority}")
    model_bench.add_parser(modes)
    priority_bench.add_parser(modes)


def run(args):
    from tmac import bench

    bench.run(args)
    return 0
