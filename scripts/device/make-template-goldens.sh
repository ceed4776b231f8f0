#!/usr/bin/env bash
# On the GPU machine (device tool): regenerate the chat template goldens with transformers and
# return them under $OUT/chat_templates. Carry the tokenizers (.cache/tokenizers/<name>) so that
# apply_chat_template is cross-checked on the real ones. Here, after the run:
#   tar -xzf <files_at>/chat_templates.tar.gz -C tests/fixtures
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
python3 -c "import sys, jinja2, transformers; print('python', sys.version.split()[0], 'jinja2', jinja2.__version__, 'transformers', transformers.__version__)"
work=$(mktemp -d)
python3 scripts/device/make-template-goldens.py --out "$work/chat_templates" 2>&1 | tee "$OUT/chat_templates.log"
tar -C "$work" -czf "$OUT/chat_templates.tar.gz" chat_templates  # one file: the tool returns a few only
ls -l "$OUT"
