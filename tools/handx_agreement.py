"""Agreement of `handx features` with an independent implementation of HandX's definitions.

Per descriptor family: the share of (clip, key) event lists that are identical between the
library's event JSON and the test-side reference (tests/annotate/handx_reference.py) with
the library's listed deviations applied; then, per deviation, how many (clip, key) event
lists that deviation alone changes relative to HandX's released behaviour.

    python tools/handx_agreement.py --data-dir DIR --clips 300
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="a synthetic or HandX dataset")
    parser.add_argument("--split", default="train")
    parser.add_argument("--clips", type=int, default=300)
    parser.add_argument("--show", type=int, default=0, help="print this many disagreements")
    args = parser.parse_args(argv)

    from handx_jax.annotate import events as E
    from handx_jax.annotate import features as F
    from handx_jax.data import store
    from handx_jax.hand import geometry as G
    from tests.annotate import handx_reference as R

    table = store.load_any_table(store.find_split(args.data_dir, args.split))
    lengths = np.diff(table.offsets)[:args.clips]
    if len(set(lengths.tolist())) != 1:
        raise SystemExit("clips of different lengths; this tool expects one length")
    n = len(lengths)
    motion = table.motion[: n * lengths[0]].reshape(n, lengths[0], 2, 21, 3)
    start = time.perf_counter()
    docs = E.batch_events(F.extract_features(motion))
    t_lib = time.perf_counter() - start
    start = time.perf_counter()
    ref = [R.reference_events(m, G.PALM_BARYCENTRIC) for m in motion]
    t_ref = time.perf_counter() - start
    agree = R.compare(docs, ref)
    changed = {}
    for dev in R.DEVIATIONS:
        others = [d for d in R.DEVIATIONS if d != dev]
        without = [R.reference_events(m, G.PALM_BARYCENTRIC, others) for m in motion]
        changed[dev] = R.compare(ref, without)
    raw = R.compare(ref, [R.reference_events(m, G.PALM_BARYCENTRIC, ()) for m in motion])
    print(f"{n} clips from {args.data_dir} ({args.split}); library {t_lib:.2f}s, reference "
          f"{t_ref:.1f}s")
    head = "".join(f"{d:>15}" for d in R.DEVIATIONS)
    print(f"{'family':<30}{'agree':>8}{'keys':>7}{'share':>8}  changed by deviation:{head}"
          f"{'all':>6}")
    for family, (same, total) in agree.items():
        devs = "".join(f"{changed[d][family][1] - changed[d][family][0]:>15d}"
                       for d in R.DEVIATIONS)
        print(f"{family:<30}{same:>8d}{total:>7d}{same / total:>8.4f}  {'':>21}{devs}"
              f"{raw[family][1] - raw[family][0]:>6d}")
    shown = 0
    for i, (a, b) in enumerate(zip(docs, ref)):
        for group, family in R.FAMILIES:
            for key in sorted(set(a[group][family]) | set(b[group][family])):
                if shown < args.show and a[group][family].get(key) != b[group][family].get(key):
                    print(f"clip {table.names[i]} {group}.{family}.{key}\n  library  "
                          f"{a[group][family].get(key)}\n  reference {b[group][family].get(key)}")
                    shown += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
