"""``tmac fp4-study`` and ``tmac fp4-bench``: FP4 formats' accuracy, and their kernels' speed."""

from tmac.commands import positive_int


def add_parser(subparsers):
    p = subparsers.add_parser("fp4-study", help="weight and output NMSE of int4 asym/sym, M0E4 and "
                                                "E2M1 at group sizes 32/64/128 (synthetic weights)")
    p.add_argument("--m", type=positive_int, default=256, help="rows of each synthetic matrix (default 256)")
    p.add_argument("--k", type=positive_int, default=4096, help="columns (default 4096)")
    p.add_argument("--seeds", type=positive_int, default=2, help="synthetic matrices per distribution, averaged")
    p.add_argument("--npy", nargs="*", default=[], help="real (M, K) weight matrices as .npy files")
    p.add_argument("--smollm2", action="store_true", help="also SmolLM2-135M's weights (tmac fetch "
                                                          "smollm2 first)")
    p.add_argument("--update", metavar="MARKDOWN", help="replace the table between the fp4-study "
                                                        "markers of this file (e.g. docs/fp4.md)")
    p.add_argument("--plot", metavar="PNG", help="write a plot (needs matplotlib: tmac[fp4])")
    p.set_defaults(run=run)

    b = subparsers.add_parser("fp4-bench", help="M0E4 bit-trick vs int4 int-to-float vs E2M1 dequant "
                                                "GEMV vs the 4-bit LUT GEMV, median microseconds")
    b.add_argument("--m", type=positive_int, default=4096)
    b.add_argument("--k", type=positive_int, default=4096)
    b.add_argument("--group-size", type=positive_int, default=128)
    b.add_argument("--repeats", type=positive_int, default=21)
    b.add_argument("--threads", type=positive_int, default=1)
    b.add_argument("--update", metavar="MARKDOWN", help="replace the table between the fp4-bench "
                                                        "markers of this file (e.g. docs/fp4.md)")
    b.set_defaults(run=run_bench)


def run(args):
    from tmac import fp4_study

    real = fp4_study.smollm2_matrices() if args.smollm2 else ()
    rows = fp4_study.study(m=args.m, k=args.k, seeds=tuple(range(args.seeds)), npy=args.npy,
                           real=real)
    table = fp4_study.markdown(rows)
    print(table)
    command = (f"tmac fp4-study --m {args.m} --k {args.k} --seeds {args.seeds}"
               + (" --smollm2" if args.smollm2 else "") + "".join(f" --npy {p}" for p in args.npy))
    if args.update:
        fp4_study.update_document(args.update, f"Produced by `{command}`.\n\n{table}")
    if args.plot:
        fp4_study.plot(rows, args.plot)
    return 0


def run_bench(args):
    from tmac import fp4_study

    rows = fp4_study.bench(m=args.m, k=args.k, group_size=args.group_size, repeats=args.repeats,
                           threads=args.threads)
    base_median, base_min = rows[1][1], rows[1][2]
    lines = [f"| kernel ({args.m} x {args.k}, group {args.group_size}, {args.threads} thread(s)) "
             "| median us | min us | median / int4's | min / int4's |", "|---|---|---|---|---|"]
    lines += [f"| {name} | {med:.0f} | {low:.0f} | {med / base_median:.2f} | {low / base_min:.2f} |"
              for name, med, low in rows]
    table = "\n".join(lines)
    print(table)
    if args.update:
        command = (f"tmac fp4-bench --m {args.m} --k {args.k} --group-size {args.group_size} "
                   f"--repeats {args.repeats} --threads {args.threads}")
        fp4_study.update_document(args.update, f"Produced by `{command}`.\n\n{table}",
                                  marker="fp4-bench")
    return 0
