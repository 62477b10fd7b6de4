#!/usr/bin/env python3
"""Reads an mfd TensorBoard event directory with TensorBoard's own reader and prints every scalar series.

Not run by CI (needs `pip install tensorboard`). To check the writer (src/train/tensorboard.rs) end to end:
    MFD_TB_DEMO=/tmp/mfd-tb cargo test --lib tensorboard::tests::demo -- --ignored
    python3 bench/check_tensorboard.py /tmp/mfd-tb --demo
`--demo` also asserts the values the demo test wrote (100 train/loss points, 10 val/macro_auroc points).
"""
import argparse
import sys

from tensorboard.backend.event_processing import event_accumulator, event_file_loader


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", help="directory holding events.out.tfevents.* files")
    ap.add_argument("--demo", action="store_true", help="check the demo test's values")
    args = ap.parse_args()
    acc = event_accumulator.EventAccumulator(args.dir, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    for tag in tags:
        ev = acc.Scalars(tag)
        print(f"{tag}: {len(ev)} points, steps {ev[0].step}..{ev[-1].step}, first {ev[0].value:.6g}, "
              f"last {ev[-1].value:.6g}")
    if args.demo:
        loss = acc.Scalars("train/loss")
        auroc = acc.Scalars("val/macro_auroc")
        assert [e.step for e in loss] == list(range(100)), "train/loss steps"
        assert all(abs(e.value - 1.0 / (1 + e.step)) < 1e-6 for e in loss), "train/loss values"
        assert [e.step for e in auroc] == list(range(9, 100, 10)), "val/macro_auroc steps"
        assert all(abs(e.value - (0.5 + e.step / 250.0)) < 1e-6 for e in auroc), "val/macro_auroc values"
        # The raw events, through the loader that checks each record's CRCs: the version record comes first.
        import glob, os
        for path in sorted(glob.glob(os.path.join(args.dir, "events.out.tfevents.*"))):
            first = next(iter(event_file_loader.EventFileLoader(path).Load()))
            assert first.file_version == "brain.Event:2", first
        print("demo values match")
    return 0


if __name__ == "__main__":
    sys.exit(main())
