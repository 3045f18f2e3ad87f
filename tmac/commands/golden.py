"""``tmac golden export DIR`` / ``tmac golden verify DIR``: golden vectors for native ports."""


def add_parser(subparsers):
    p = subparsers.add_parser("golden", help="export or verify golden vectors (every stage of the "
                                             "reference) for ports to other languages")
    sub = p.add_subparsers(dest="golden_command", required=True)
    e = sub.add_parser("export", help="write the golden cases, MANIFEST.json and INDEX.txt to DIR")
    e.add_argument("directory", metavar="DIR")
    e.add_argument("--force", action="store_true", help="replace DIR if it is not empty")
    e.set_defaults(run=run_export)
    v = sub.add_parser("verify", help="check DIR's checksums and recompute every case with the "
                                      "reference and every kernel path of this CPU")
    v.add_argument("directory", metavar="DIR")
    v.add_argument("--reference-only", action="store_true", help="skip the kernel paths")
    v.add_argument("--isa", action="append", metavar="PATH",
                   help="only this kernel path (avx512, avx2, portable); repeatable")
    v.add_argument("--quiet", action="store_true", help="print failures and the summary only")
    v.set_defaults(run=run_verify)


def run_export(args):
    from tmac.golden import export

    manifest = export(args.directory, force=args.force)
    total = sum(f["size"] for f in manifest["files"].values())
    print(f"wrote {len(manifest['cases'])} cases to {args.directory} ({total} bytes, "
          f"schema {manifest['schema_version']})")
    return 0


def run_verify(args):
    from tmac.golden import GoldenFormatError, verify

    def log(case, passed, failures):
        if not args.quiet or failures:
            status = "FAIL" if failures else "PASS"
            print(f"{status} {case}: {', '.join(passed) or 'nothing'} passed")
        for line in failures:
            print(f"  {line}")

    try:
        report = verify(args.directory, kernels=not args.reference_only, only_backends=args.isa,
                        log=log)
    except GoldenFormatError as error:
        print(f"tmac golden verify: error: {error}")
        return 1
    cases = [f for f in report.failures if not f.startswith("case ")]
    for line in cases:
        print(f"FAIL {line}")
    print(f"{len(report.passed)} cases, {len(report.failures)} failures: "
          f"{'OK' if report.ok else 'FAILED'}")
    return 0 if report.ok else 1
