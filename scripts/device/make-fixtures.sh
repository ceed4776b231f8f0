#!/usr/bin/env bash
# On the GPU machine (device tool): regenerate the reference fixtures with transformers and
# return them as one tarball under $OUT. Usage there: bash scripts/device/make-fixtures.sh
set -euo pipefail
export PYTHONUNBUFFERED=1
work=$(mktemp -d)
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
python3 tests/fixtures/make_fixtures.py --out "$work"
du -sh "$work"/models/* "$work"/reference
tar -C "$work" -czf "$OUT/fixtures.tar.gz" models reference VERSIONS.json
ls -l "$OUT"
